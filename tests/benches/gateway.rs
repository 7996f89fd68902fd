//! Gateway overhead: a client streams from a paced fixture backend (a steady 500 tokens/s per
//! stream, like a GPU server) directly, and through a plugboard gateway in front of it — in
//! chat mode (the backend parses, plugboard checks) and in raw mode (plugboard's wasm adapter
//! parses the streamed text) — at 1 and 8 concurrent streams, all in the same run. A
//! benchmark, not a test: it prints a table.
//!
//! `cargo bench -p plugboard-tests --bench gateway`

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde_json::json;

use plugboard_tests::TestServer;
use plugboard_tests::backend_fixture::{FixtureBackend, Reply};

const TOKENS: usize = 256;
const PACE: Duration = Duration::from_millis(2);
/// Each token's text; counted in what the client receives (not alphanumeric: ids are).
const TOKEN: &str = "~~ ";
const ROUNDS: usize = 12;

/// A streamed answer of `TOKENS` tokens in the chat or the completions shape.
fn answer(chat: bool) -> Reply {
    let mut frames: Vec<String> = (0..TOKENS)
        .map(|_| {
            let choice = if chat {
                json!({"index": 0, "delta": {"content": TOKEN}, "finish_reason": null})
            } else {
                json!({"index": 0, "text": TOKEN, "finish_reason": null})
            };
            json!({"id": "x", "object": "chunk", "model": "m", "choices": [choice]}).to_string()
        })
        .collect();
    frames.push(
        json!({"choices": [{"index": 0, "delta": {}, "text": "", "finish_reason": "stop"}]})
            .to_string(),
    );
    frames.push(
        json!({"choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": TOKENS}})
            .to_string(),
    );
    frames.push("[DONE]".into());
    Reply::sse(&frames).paced(PACE)
}

/// One stream's time to first token and decode rate (tokens after the first, per second).
async fn one(client: &reqwest::Client, url: &str, body: &serde_json::Value) -> (f64, f64) {
    let started = Instant::now();
    let response = client.post(url).json(body).send().await.expect("answers");
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let mut bytes = response.bytes_stream();
    let (mut seen, mut first, mut last) = (0usize, None, started);
    let mut tail = String::new();
    while let Some(chunk) = bytes.next().await {
        tail.push_str(&String::from_utf8_lossy(&chunk.expect("a chunk")));
        let count = tail.matches("~~").count();
        if count > 0 {
            seen += count;
            first.get_or_insert_with(Instant::now);
            last = Instant::now();
            // Keep a possible half "~~" at the end.
            tail = tail[tail.rfind("~~").map(|i| i + 2).unwrap_or(0)..].to_string();
        }
    }
    assert_eq!(seen, TOKENS, "{url}: every token arrives");
    let first = first.expect("a first token");
    let ttft = first.duration_since(started).as_secs_f64() * 1e3;
    let rate = (TOKENS - 1) as f64 / last.duration_since(first).as_secs_f64().max(1e-9);
    (ttft, rate)
}

/// Median time to first token (ms) and median per-stream decode rate over `ROUNDS` rounds of
/// `streams` concurrent streams.
fn measure(url: &str, body: &serde_json::Value, streams: usize) -> (f64, f64) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let client = reqwest::Client::new();
    let mut ttfts = Vec::new();
    let mut rates = Vec::new();
    runtime.block_on(async {
        one(&client, url, body).await; // warm-up
        for _ in 0..ROUNDS {
            let results =
                futures::future::join_all((0..streams).map(|_| one(&client, url, body))).await;
            for (ttft, rate) in results {
                ttfts.push(ttft);
                rates.push(rate);
            }
        }
    });
    (median(&mut ttfts), median(&mut rates))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let (chat, raw) = (FixtureBackend::start(), FixtureBackend::start());
    chat.always(answer(true));
    raw.always(answer(false));
    let dir = tempfile::tempdir().expect("temp dir");
    let template = "{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";
    std::fs::write(dir.path().join("chatml.jinja"), template).expect("written");
    let config = format!(
        r#"
[[backends]]
name = "chat"
kind = "vllm"
urls = ["{chat}"]

[[backends]]
name = "raw"
kind = "vllm"
urls = ["{raw}"]

[[models]]
id = "chat"
source = {{ backend = "chat", model = "m" }}

[[models]]
id = "raw"
source = {{ backend = "raw", model = "m" }}
chat_template = "chatml.jinja"
adapter = "hermes"
"#,
        chat = chat.base,
        raw = raw.base,
    );
    std::fs::write(dir.path().join("gateway.toml"), config).expect("written");
    let plugins = dir.path().join("plugins");
    std::fs::create_dir_all(&plugins).expect("created");
    let path = |p: std::path::PathBuf| p.to_str().expect("utf-8").to_string();
    let gateway = TestServer::start(&[
        "--config",
        &path(dir.path().join("gateway.toml")),
        "--model",
        "chat",
        "--models-dir",
        &path(dir.path().to_path_buf()),
        "--plugins",
        &path(plugins),
    ]);
    let tools = json!([{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]);
    let request = |model: &str| {
        json!({"model": model, "stream": true, "tools": tools,
               "messages": [{"role": "user", "content": "What's the weather in Paris?"}]})
    };
    println!(
        "Gateway overhead: {TOKENS} tokens a stream, one every {} ms from the backend; medians of {ROUNDS} rounds.\n",
        PACE.as_millis()
    );
    println!("| streams | path | TTFT p50 | added TTFT | decode tok/s per stream | vs direct |");
    println!("|---|---|---|---|---|---|");
    for streams in [1, 8] {
        let (direct_ttft, direct_rate) = measure(
            &format!("{}/v1/chat/completions", chat.base),
            &request("m"),
            streams,
        );
        println!(
            "| {streams} | backend directly | {direct_ttft:.2} ms | — | {direct_rate:.0} | 1.00 |"
        );
        for (label, model) in [
            ("gateway, chat mode", "chat"),
            ("gateway, raw mode (wasm parser)", "raw"),
        ] {
            let (ttft, rate) = measure(
                &format!("{}/v1/chat/completions", gateway.base),
                &request(model),
                streams,
            );
            println!(
                "| {streams} | {label} | {ttft:.2} ms | {:+.2} ms | {rate:.0} | {:.3} |",
                ttft - direct_ttft,
                rate / direct_rate
            );
        }
    }
}
