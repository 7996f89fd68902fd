//! What one request may ask for and what one caller may do, on a real `plugboard serve`: each
//! limit refused by name before any work, in the API's own shape; per-key concurrency and
//! rate; a time limit that ends a stream with an error event; and a stop (SIGTERM) that lets
//! requests finish for a grace period and then ends them with an error event, never a cut.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use plugboard_tests::http::{get, ndjson, post, sse};
use plugboard_tests::{TestServer, models};

const MODEL: &str = "qwen2.5-coder-0.5b";

/// A prompt whose greedy answer runs for hundreds of tokens (many seconds here).
const COUNTING: &str = "Count from 1 to 1000, one number per line, with no other text.";

fn qwen_server(extra: &[&str]) -> Option<TestServer> {
    let qwen = models::qwen()?;
    let mut args = vec![
        "--models-dir",
        qwen.parent().and_then(|p| p.to_str()).expect("utf-8"),
    ];
    args.extend_from_slice(extra);
    Some(TestServer::start(&args))
}

fn chat(max_tokens: usize, messages: usize, tools: Vec<Value>) -> Value {
    json!({
        "model": MODEL, "max_tokens": max_tokens, "temperature": 0,
        "messages": vec![json!({"role": "user", "content": "Count to twenty, slowly."}); messages],
        "tools": tools,
    })
}

fn tool(name: &str, description: &str) -> Value {
    json!({"type": "function", "function": {"name": name, "description": description,
           "parameters": {"type": "object", "properties": {}}}})
}

#[test]
fn each_request_limit_is_refused_by_name_before_any_work() {
    let Some(server) = qwen_server(&[
        "--max-tokens-limit",
        "16",
        "--max-messages",
        "4",
        "--max-tools",
        "2",
        "--max-tools-bytes",
        "1K",
    ]) else {
        return;
    };
    let base = &server.base;
    let refused = |body: &Value, code: &str, param: &str| {
        let answer = post(base, "/v1/chat/completions", body, &[]);
        assert_eq!(answer.status, 400, "{}", answer.text);
        let error = &answer.json()["error"];
        assert_eq!(error["code"], code, "{error}");
        assert_eq!(error["param"], param, "{error}");
    };
    refused(&chat(17, 1, vec![]), "max_tokens_too_large", "max_tokens");
    refused(&chat(8, 5, vec![]), "too_many_messages", "messages");
    refused(
        &chat(8, 1, vec![tool("a", ""), tool("b", ""), tool("c", "")]),
        "too_many_tools",
        "tools",
    );
    refused(
        &chat(8, 1, vec![tool("a", &"x".repeat(2000))]),
        "tools_too_large",
        "tools",
    );
    // A prompt longer than the model's context: 400 before it is run.
    let long = json!({"model": MODEL, "max_tokens": 4,
                      "messages": [{"role": "user", "content": "word ".repeat(9000)}]});
    let started = Instant::now();
    refused(&long, "context_length_exceeded", "messages");
    eprintln!("the long prompt was refused in {:?}", started.elapsed());
    // Raw completions and Ollama's API keep the same limits, each in its own shape.
    let completion = post(
        base,
        "/v1/completions",
        &json!({"model": MODEL, "prompt": "hi", "max_tokens": 17}),
        &[],
    );
    assert_eq!(completion.code(), "max_tokens_too_large");
    let ollama = post(
        base,
        "/api/chat",
        &json!({"model": MODEL, "stream": false, "options": {"num_predict": 17},
                "messages": [{"role": "user", "content": "hi"}]}),
        &[],
    );
    assert_eq!(ollama.status, 400);
    assert!(
        ollama.json()["error"]
            .as_str()
            .unwrap_or("")
            .contains("max_tokens"),
        "{}",
        ollama.text
    );
    // Leaving max_tokens out does not escape the ceiling.
    let open_ended = json!({"model": MODEL, "temperature": 0,
                            "messages": [{"role": "user", "content": "Write a long story."}]});
    let answer = post(base, "/v1/chat/completions", &open_ended, &[]).json();
    let generated = answer["usage"]["completion_tokens"]
        .as_u64()
        .expect("usage");
    assert!(generated <= 16, "{generated} tokens: {answer}");
    // What fits is served.
    assert_eq!(
        post(base, "/v1/chat/completions", &chat(4, 4, vec![]), &[]).status,
        200
    );
}

/// A chat stream, followed on a thread of its own.
fn stream(base: &str, body: Value) -> std::sync::mpsc::Receiver<Option<String>> {
    sse(&format!("{base}/v1/chat/completions"), Some(body))
}

/// Every payload of a stream until it ends (within `wait`).
fn drain(rx: &std::sync::mpsc::Receiver<Option<String>>, wait: Duration) -> Vec<String> {
    let deadline = Instant::now() + wait;
    let mut got = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(Some(data)) => got.push(data),
            Ok(None) => return got,
            Err(_) => panic!("the stream did not end within {wait:?}: {got:?}"),
        }
    }
}

fn long_stream() -> Value {
    json!({"model": MODEL, "stream": true, "max_tokens": 4000, "temperature": 0,
           "messages": [{"role": "user", "content": COUNTING}]})
}

#[test]
fn a_key_may_have_so_many_requests_in_flight_and_start_so_many_a_minute() {
    let Some(server) = qwen_server(&["--max-concurrent-per-key", "1", "--rate-limit", "4/min"])
    else {
        return;
    };
    let base = &server.base;
    // One stream in flight: a second request of the same (keyless) caller waits its turn.
    let first = stream(base, long_stream());
    assert!(
        first
            .recv_timeout(Duration::from_secs(60))
            .expect("a chunk")
            .is_some()
    );
    let second = post(base, "/v1/chat/completions", &chat(2, 1, vec![]), &[]);
    assert_eq!(second.status, 429, "{}", second.text);
    assert_eq!(second.code(), "too_many_concurrent_requests");
    // Admin and public routes are not inference: they pass.
    assert_eq!(get(base, "/health").status, 200);
    drop(first);
    // Once the stream's client is gone its slot is free again. The rate (4 a minute, two used)
    // lets two more through, then says when to come back.
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut answer = get(base, "/v1/models");
    while answer.status == 429 && answer.code() == "too_many_concurrent_requests" {
        assert!(Instant::now() < deadline, "the slot was not given back");
        std::thread::sleep(Duration::from_millis(100));
        answer = get(base, "/v1/models");
    }
    assert_eq!(answer.status, 200, "{}", answer.text);
    let mut statuses = vec![];
    for _ in 0..3 {
        let answer = get(base, "/v1/models");
        statuses.push(answer.status);
        if answer.status == 429 {
            assert_eq!(answer.code(), "rate_limited");
            assert!(answer.header("retry-after").parse::<u64>().unwrap_or(0) >= 1);
        }
    }
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    // Nothing is left in flight.
    let metrics = get(base, "/metrics").text;
    let in_flight = metrics
        .lines()
        .find(|l| l.starts_with("plugboard_requests_in_flight"))
        .expect("the gauge");
    assert!(in_flight.ends_with(" 0"), "{in_flight}");
}

#[test]
fn a_request_past_its_time_ends_with_an_error_event() {
    let Some(server) = qwen_server(&["--request-timeout", "2s"]) else {
        return;
    };
    let events = drain(
        &stream(&server.base, long_stream()),
        Duration::from_secs(60),
    );
    let error = events
        .iter()
        .rev()
        .find_map(|d| {
            serde_json::from_str::<Value>(d)
                .ok()
                .filter(|v| v.get("error").is_some())
        })
        .unwrap_or_else(|| panic!("no error event: {events:?}"));
    assert_eq!(error["error"]["code"], "request_timeout", "{error}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    let whole = post(
        &server.base,
        "/v1/chat/completions",
        &json!({"model": MODEL, "max_tokens": 4000, "temperature": 0,
                "messages": [{"role": "user", "content": COUNTING}]}),
        &[],
    );
    assert_eq!(
        (whole.status, whole.code()),
        (504, "request_timeout".into())
    );
}

#[test]
fn a_stop_lets_requests_finish_for_the_grace_period_then_ends_them_with_an_error_event() {
    let Some(server) = qwen_server(&["--shutdown-grace", "2s"]) else {
        return;
    };
    let rx = stream(&server.base, long_stream());
    assert!(
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a chunk")
            .is_some()
    );
    // And an Ollama stream (NDJSON), which ends with an error line of its own.
    let lines = ndjson(
        &format!("{}/api/chat", server.base),
        Some(
            json!({"model": MODEL, "options": {"num_predict": 4000, "temperature": 0},
                    "messages": [{"role": "user", "content": COUNTING}]}),
        ),
    );
    assert!(
        lines
            .recv_timeout(Duration::from_secs(60))
            .expect("a line")
            .is_some()
    );
    let events = sse(&format!("{}/v1/events", server.base), None);
    std::thread::sleep(Duration::from_millis(300));
    let stopped = Instant::now();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &server.pid().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    // The event stream, which never ends by itself, ends at once: an open page does not
    // hold the stop for the whole grace period.
    let last = drain(&events, Duration::from_secs(1));
    assert!(
        last.iter().any(|d| d.contains("server_shutting_down")),
        "{last:?}"
    );
    let events = drain(&rx, Duration::from_secs(30));
    let ended = stopped.elapsed();
    let chunks = events
        .iter()
        .filter(|d| d.contains("chat.completion.chunk"))
        .count();
    assert!(
        chunks > 1,
        "the stream went on during the grace period: {events:?}"
    );
    let error: Value = serde_json::from_str(&events[events.len() - 2]).expect("JSON");
    assert_eq!(error["error"]["code"], "server_shutting_down", "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(
        ended >= Duration::from_millis(1500),
        "ended after {ended:?}, before the grace period"
    );
    let lines = drain(&lines, Duration::from_secs(30));
    let last: Value = serde_json::from_str(lines.last().expect("lines")).expect("JSON");
    assert!(
        last["error"]
            .as_str()
            .is_some_and(|e| e.contains("shutting down")),
        "{lines:?}"
    );
    assert!(
        lines.len() > 2,
        "the stream went on during the grace period: {lines:?}"
    );
    // The process exits once its streams are ended.
    let deadline = Instant::now() + Duration::from_secs(15);
    while std::path::Path::new(&format!("/proc/{}", server.pid())).exists()
        && std::fs::read_to_string(format!("/proc/{}/stat", server.pid()))
            .is_ok_and(|s| !s.contains(") Z "))
    {
        assert!(Instant::now() < deadline, "the server did not exit");
        std::thread::sleep(Duration::from_millis(100));
    }
}
