//! plugboard as the tool-calling gateway in front of remote backends: a real `plugboard serve`
//! whose models are served by a fixture backend (recorded vLLM, OpenAI and Ollama streams,
//! re-split, with faults; see tests/support/backend_fixture.rs) or by a second plugboard on
//! the Qwen test model.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use plugboard_tests::backend_fixture::{Fault, FixtureBackend, Reply};
use plugboard_tests::http::{Answer, post};
use plugboard_tests::{TestServer, models};

/// A ChatML template with a tool section, for the raw-mode models of the fixture tests.
const CHATML: &str = "{%- if tools %}<|im_start|>system\nTools: {% for t in tools %}{{ t | tojson }}{% endfor %}<|im_end|>\n{% endif %}\
{%- for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}<|im_start|>assistant\n";

const KEY_VARIABLE: &str = "PLUGBOARD_TEST_BACKEND_KEY";

fn weather_tools() -> Value {
    json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Get the current weather in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        },
    }])
}

fn weather_request(model: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "messages": [{"role": "user", "content": "What's the weather in Paris?"}],
        "tools": weather_tools(),
        "stream": stream,
        "temperature": 0,
    })
}

/// A gateway: `plugboard serve` with this config (a `chatml.jinja` beside it), no local model.
fn gateway(
    config: &str,
    default_model: &str,
    env: &[(&str, &str)],
) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("chatml.jinja"), CHATML).expect("written");
    std::fs::write(dir.path().join("gateway.toml"), config).expect("written");
    let plugins = dir.path().join("plugins");
    let models = dir.path().join("models");
    std::fs::create_dir_all(&plugins).expect("created");
    std::fs::create_dir_all(&models).expect("created");
    let path = |p: &std::path::Path| p.to_str().expect("utf-8").to_string();
    let server = TestServer::start_with_env(
        &[
            "--config",
            &path(&dir.path().join("gateway.toml")),
            "--model",
            default_model,
            "--models-dir",
            &path(&models),
            "--plugins",
            &path(&plugins),
        ],
        env,
    );
    (server, dir)
}

/// The one call of a non-streamed chat answer, as (name, arguments).
fn only_call(answer: &Answer) -> (String, Value) {
    let body = answer.json();
    let calls = body["choices"][0]["message"]["tool_calls"]
        .as_array()
        .unwrap_or_else(|| panic!("tool calls: {body}"));
    assert_eq!(calls.len(), 1, "{body}");
    let f = &calls[0]["function"];
    (
        f["name"].as_str().unwrap_or("").to_string(),
        serde_json::from_str(f["arguments"].as_str().unwrap_or("")).unwrap_or(Value::Null),
    )
}

/// The calls of a streamed chat answer, assembled from its chunks.
fn streamed_calls(answer: &Answer) -> Vec<(String, Value)> {
    let mut calls: Vec<(String, String)> = Vec::new();
    for event in answer.events() {
        for call in event["choices"][0]["delta"]["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let index = call["index"].as_u64().unwrap_or(0) as usize;
            if calls.len() <= index {
                calls.resize(index + 1, Default::default());
            }
            if let Some(name) = call["function"]["name"].as_str() {
                calls[index].0 = name.to_string();
            }
            calls[index]
                .1
                .push_str(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    calls
        .into_iter()
        .map(|(n, a)| (n, serde_json::from_str(&a).unwrap_or(Value::Null)))
        .collect()
}

fn paris() -> (String, Value) {
    ("get_weather".into(), json!({"city": "Paris"}))
}

/// The five ways to reach a backend, one fixture each.
fn five_backends(fixtures: &[&FixtureBackend; 3]) -> String {
    let [vllm, openai, ollama] = fixtures;
    format!(
        r#"
[[backends]]
name = "vllm"
kind = "vllm"
urls = ["{vllm}"]
api_key_env = "{KEY_VARIABLE}"

[[backends]]
name = "openai"
kind = "openai"
urls = ["{openai}/v1"]
api_key_env = "{KEY_VARIABLE}"

[[backends]]
name = "ollama"
kind = "ollama"
urls = ["{ollama}"]

[[models]]
id = "vllm-raw"
source = {{ backend = "vllm", model = "Qwen/Qwen2.5-32B-Instruct" }}
chat_template = "chatml.jinja"
adapter = "hermes"

[[models]]
id = "vllm-chat"
source = {{ backend = "vllm", model = "Qwen/QwQ-32B" }}

[[models]]
id = "openai-chat"
source = {{ backend = "openai", model = "gpt-4o-mini" }}

[[models]]
id = "ollama-raw"
source = {{ backend = "ollama", model = "qwen2.5:32b" }}
mode = "raw"
chat_template = "chatml.jinja"
adapter = "hermes"
context_length = 16384

[[models]]
id = "ollama-chat"
source = {{ backend = "ollama", model = "qwen2.5:32b" }}
"#,
        vllm = vllm.base,
        openai = openai.base,
        ollama = ollama.base,
    )
}

/// Every wire format, re-split at 1, 2, 3, 5 and 8 bytes, gives the same checked call, whole
/// and streamed; and each backend was sent what its protocol needs.
#[test]
fn every_wire_format_gives_the_same_call_at_every_split() {
    let (vllm, openai, ollama) = (
        FixtureBackend::start(),
        FixtureBackend::start(),
        FixtureBackend::start(),
    );
    let (server, _dir) = gateway(
        &five_backends(&[&vllm, &openai, &ollama]),
        "vllm-chat",
        &[(KEY_VARIABLE, "sk-test-1")],
    );
    let cases = [
        ("vllm-raw", &vllm, "vllm-completions.sse"),
        ("vllm-chat", &vllm, "vllm-chat.sse"),
        ("openai-chat", &openai, "openai-chat.sse"),
        ("ollama-raw", &ollama, "ollama-generate.ndjson"),
        ("ollama-chat", &ollama, "ollama-chat.ndjson"),
    ];
    for (model, fixture, recorded) in cases {
        for split in [1, 2, 3, 5, 8, usize::MAX] {
            fixture.push(Reply::recorded(recorded, split));
            let answer = post(
                &server.base,
                "/v1/chat/completions",
                &weather_request(model, false),
                &[],
            );
            assert_eq!(answer.status, 200, "{model} at {split}: {}", answer.text);
            assert_eq!(only_call(&answer), paris(), "{model} at {split}");
            let body = answer.json();
            assert_eq!(
                body["choices"][0]["finish_reason"], "tool_calls",
                "{model}: {body}"
            );
            assert_eq!(answer.header("x-plugboard-model"), model);
            assert_eq!(
                answer.header("x-plugboard-backend"),
                model.split('-').next().unwrap()
            );
            assert_eq!(body["plugboard"]["attempts"][0]["outcome"], "served");
            if model.ends_with("raw") {
                assert_eq!(
                    answer.header("x-plugboard-adapter").split('/').next(),
                    Some("hermes")
                );
            }
        }
        fixture.push(Reply::recorded(recorded, 3));
        let answer = post(
            &server.base,
            "/v1/chat/completions",
            &weather_request(model, true),
            &[],
        );
        assert_eq!(answer.status, 200, "{model} streamed: {}", answer.text);
        assert_eq!(streamed_calls(&answer), vec![paris()], "{model} streamed");
    }
    // Reasoning a backend separated comes through as reasoning.
    vllm.push(Reply::recorded("vllm-chat.sse", 4));
    let body = post(
        &server.base,
        "/v1/chat/completions",
        &weather_request("vllm-chat", false),
        &[],
    )
    .json();
    assert_eq!(
        body["choices"][0]["message"]["reasoning_content"],
        "The user wants the weather in Paris."
    );
    assert_eq!(body["usage"]["completion_tokens"], 42);

    // What was sent: raw prompts rendered by the adapter, vLLM's switches, the key, num_ctx.
    let sent = vllm.received();
    let raw = sent
        .iter()
        .find(|r| r.path == "/v1/completions")
        .expect("a completion");
    let prompt = raw.body["prompt"].as_str().expect("a text prompt");
    assert!(
        prompt.contains("<|im_start|>user\nWhat's the weather in Paris?<|im_end|>")
            && prompt.ends_with("<|im_start|>assistant")
            && prompt.contains("\"get_weather\""),
        "{prompt}"
    );
    assert_eq!(raw.body["model"], "Qwen/Qwen2.5-32B-Instruct");
    assert_eq!(raw.body["skip_special_tokens"], false);
    assert_eq!(raw.body["add_special_tokens"], false);
    assert_eq!(raw.body["stream"], true);
    assert!(
        raw.body["max_tokens"].as_u64().is_some(),
        "max_tokens is always sent"
    );
    assert_eq!(raw.authorization.as_deref(), Some("Bearer sk-test-1"));
    let chat = sent
        .iter()
        .find(|r| r.path == "/v1/chat/completions")
        .expect("a chat");
    assert_eq!(chat.body["tools"], weather_tools());
    assert_eq!(
        chat.body["messages"][0]["content"],
        "What's the weather in Paris?"
    );
    assert_eq!(chat.body["stream_options"]["include_usage"], true);
    assert!(
        openai
            .received()
            .iter()
            .all(|r| r.path == "/v1/chat/completions"
                && r.body.get("top_k").is_none()
                && r.authorization.as_deref() == Some("Bearer sk-test-1"))
    );
    let ollama_sent = ollama.received();
    let generate = ollama_sent
        .iter()
        .find(|r| r.path == "/api/generate")
        .expect("a generate");
    assert_eq!(generate.body["raw"], true);
    assert_eq!(generate.body["options"]["num_ctx"], 16384);
    assert!(
        generate.body["prompt"]
            .as_str()
            .unwrap_or("")
            .starts_with("<|im_start|>system")
    );
    assert_eq!(generate.authorization, None, "no key configured for ollama");
    let ollama_chat = ollama_sent
        .iter()
        .find(|r| r.path == "/api/chat")
        .expect("a chat");
    assert!(ollama_chat.body["options"]["num_ctx"].as_u64().is_some());
    assert_eq!(ollama_chat.body["tools"], weather_tools());
    assert!(
        !server
            .log
            .lock()
            .map(|l| l.contains("sk-test-1"))
            .unwrap_or(true),
        "the key is never logged"
    );
}

/// A backend's calls are checked like the local engine's: one whose arguments break the
/// schema is not released, and the problem is reported.
#[test]
fn a_backends_calls_are_checked_against_the_schema() {
    let vllm = FixtureBackend::start();
    let (openai, ollama) = (FixtureBackend::start(), FixtureBackend::start());
    let (server, _dir) = gateway(
        &five_backends(&[&vllm, &openai, &ollama]),
        "vllm-chat",
        &[(KEY_VARIABLE, "k")],
    );
    let bad_call = |arguments: &str| {
        Reply::sse(&[
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {"name": "get_weather", "arguments": arguments}}]}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
            "[DONE]".to_string(),
        ])
    };
    vllm.push(bad_call(r#"{"city": 5}"#));
    let body = post(
        &server.base,
        "/v1/chat/completions",
        &weather_request("vllm-chat", false),
        &[],
    )
    .json();
    assert!(
        body["choices"][0]["message"]["tool_calls"].is_null(),
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    let problems = body["plugboard"]["problems"].as_array().expect("problems");
    assert!(
        problems[0]["message"]
            .as_str()
            .unwrap_or("")
            .contains("city"),
        "{body}"
    );
    // An unknown tool, and arguments that are not JSON, likewise.
    for (name, arguments) in [("delete_everything", "{}"), ("get_weather", "{\"city\": ")] {
        vllm.push(Reply::sse(&[
            json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {"name": name, "arguments": arguments}}]}}]}).to_string(),
            json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
        ]));
        let body = post(
            &server.base,
            "/v1/chat/completions",
            &weather_request("vllm-chat", false),
            &[],
        )
        .json();
        assert!(
            body["choices"][0]["message"]["tool_calls"].is_null(),
            "{name}: {body}"
        );
        assert!(!body["plugboard"]["problems"].as_array().unwrap().is_empty());
    }
    // tool_choice "required" with no call from the backend: the request fails, as locally.
    vllm.push(Reply::sse(&[
        json!({"choices": [{"index": 0, "delta": {"content": "It is sunny."}}]}).to_string(),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}).to_string(),
    ]));
    let mut request = weather_request("vllm-chat", false);
    request["tool_choice"] = json!("required");
    let answer = post(&server.base, "/v1/chat/completions", &request, &[]);
    assert_eq!(answer.status, 422, "{}", answer.text);
    assert_eq!(answer.code(), "tool_call_missing");
}

/// What goes wrong with a backend gives a clear error in the API's shape, never a hung
/// request, and the server goes on serving.
#[test]
fn backend_faults_give_clear_errors_and_the_server_goes_on() {
    let (a, b) = (FixtureBackend::start(), FixtureBackend::start());
    // A port with nothing behind it.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port");
    let config = format!(
        r#"
[[backends]]
name = "pair"
kind = "vllm"
urls = ["{a}", "{b}"]
timeouts = {{ connect = 2, first_token = 3, idle = 1, total = 20 }}
cooldown = {{ failures = 100, window = 1, duration = 1 }}

[[backends]]
name = "single"
kind = "vllm"
urls = ["{a}"]
timeouts = {{ connect = 2, first_token = 3, idle = 1, total = 20 }}

[[backends]]
name = "one"
kind = "ollama"
urls = ["{a}"]
timeouts = {{ connect = 2, first_token = 3, idle = 1, total = 20 }}

[[backends]]
name = "nowhere"
kind = "openai"
urls = ["http://{closed}"]

[[backends]]
name = "locked"
kind = "openai"
urls = ["{a}"]
api_key_env = "PLUGBOARD_TEST_KEY_NOBODY_SET"

[[models]]
id = "pair"
source = {{ backend = "pair", model = "m" }}

[[models]]
id = "single"
source = {{ backend = "single", model = "m" }}

[[models]]
id = "one"
source = {{ backend = "one", model = "m" }}

[[models]]
id = "nowhere"
source = {{ backend = "nowhere", model = "m" }}

[[models]]
id = "locked"
source = {{ backend = "locked", model = "m" }}
"#,
        a = a.base,
        b = b.base,
    );
    let (server, _dir) = gateway(&config, "pair", &[]);
    let ask = |model: &str, stream: bool| {
        post(
            &server.base,
            "/v1/chat/completions",
            &weather_request(model, stream),
            &[],
        )
    };
    let served_by_b = |what: &str| {
        let before = b.received().len();
        b.push(Reply::recorded("vllm-chat.sse", 8));
        let answer = ask("pair", false);
        assert_eq!(answer.status, 200, "{what}: {}", answer.text);
        assert_eq!(only_call(&answer), paris(), "{what}");
        assert_eq!(
            b.received().len(),
            before + 1,
            "{what}: the second replica served"
        );
    };
    // Replicas are used in turn: the first request goes to the first.
    a.push(
        Reply::status(
            429,
            "application/json",
            r#"{"error": {"message": "slow down"}}"#,
        )
        .header("retry-after", "30"),
    );
    served_by_b("429 with Retry-After");
    // The first replica honours its Retry-After: the next requests go to the second only.
    let before = a.received().len();
    served_by_b("while the first replica waits");
    served_by_b("still waiting");
    assert_eq!(
        a.received().len(),
        before,
        "nothing was sent to a replica in its Retry-After"
    );

    // With both replicas failing, the error says what happened.
    let (a2, b2) = (FixtureBackend::start(), FixtureBackend::start());
    let config2 = config.replace(&a.base, &a2.base).replace(&b.base, &b2.base);
    drop(server);
    let (server, _dir) = gateway(&config2, "pair", &[]);
    let ask = |model: &str, stream: bool| {
        post(
            &server.base,
            "/v1/chat/completions",
            &weather_request(model, stream),
            &[],
        )
    };
    let (a, b) = (a2, b2);
    let both = |reply: Reply| {
        a.push(reply.clone());
        b.push(reply);
    };
    both(Reply::status(
        500,
        "application/json",
        r#"{"object": "error", "message": "CUDA out of memory"}"#,
    ));
    let answer = ask("pair", false);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (502, "backend_error"),
        "{}",
        answer.text
    );
    assert!(
        answer.text.contains("CUDA out of memory"),
        "{}",
        answer.text
    );

    both(Reply::status(200, "text/html", "<html>proxy login</html>"));
    let answer = ask("pair", false);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (502, "backend_protocol_error"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("HTML"), "{}", answer.text);

    // An error sent in-band after a 200, before anything else: an error here too.
    a.push(Reply::sse(&[
        json!({"error": {"message": "engine died", "type": "server_error"}}).to_string(),
    ]));
    let answer = ask("single", false);
    assert_eq!(answer.status, 502, "{}", answer.text);
    assert!(answer.text.contains("engine died"), "{}", answer.text);

    // After the answer started, what goes wrong arrives in-band, in the stream's shape.
    let started = |then: &str| {
        Reply::sse(&[
            json!({"choices": [{"index": 0, "delta": {"content": "Let me"}}]}).to_string(),
            then.to_string(),
        ])
    };
    a.push(started(
        &json!({"error": {"message": "engine died"}}).to_string(),
    ));
    let answer = ask("single", true);
    assert_eq!(answer.status, 200);
    let events = answer.events();
    assert!(
        events
            .iter()
            .any(|e| e["choices"][0]["delta"]["content"] == "Let me")
    );
    assert!(
        events.last().unwrap()["error"]["message"]
            .as_str()
            .unwrap_or("")
            .contains("engine died"),
        "{events:?}"
    );
    a.push(started("{not json"));
    let answer = ask("single", false);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (502, "backend_protocol_error"),
        "{}",
        answer.text
    );

    // A connection cut mid-body, and a stream that stalls: an error within the idle timeout.
    let recorded = Reply::recorded("vllm-chat.sse", 16);
    a.push(recorded.clone().fault(Fault::ResetAfter(900)));
    let answer = ask("single", false);
    assert_eq!(answer.status, 502, "{}", answer.text);
    a.push(recorded.clone().fault(Fault::StallAfter(900)));
    let timer = Instant::now();
    let answer = ask("single", false);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (504, "backend_timeout"),
        "{}",
        answer.text
    );
    assert!(answer.text.contains("idle"), "{}", answer.text);
    assert!(timer.elapsed() < Duration::from_secs(15), "no hung request");
    // Stalled before its first byte: the first-token timeout.
    a.push(recorded.clone().fault(Fault::StallAfter(0)));
    let answer = ask("single", false);
    assert_eq!(answer.status, 504, "{}", answer.text);
    assert!(answer.text.contains("first token"), "{}", answer.text);

    // An Ollama error line, and an Ollama stream cut before `done`.
    a.push(Reply::status(
        200,
        "application/x-ndjson",
        "{\"error\":\"model 'm' not found\"}\n",
    ));
    let answer = ask("one", false);
    assert_eq!(answer.status, 502, "{}", answer.text);
    assert!(answer.text.contains("not found"), "{}", answer.text);
    a.push(Reply::status(
        200,
        "application/x-ndjson",
        "{\"message\":{\"role\":\"assistant\",\"content\":\"Hi\"},\"done\":false}\n",
    ));
    let answer = ask("one", false);
    assert_eq!(answer.status, 502, "{}", answer.text);
    assert!(answer.text.contains("ended"), "{}", answer.text);

    // Unreachable, and a key missing from the environment.
    let answer = ask("nowhere", false);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (502, "backend_unreachable"),
        "{}",
        answer.text
    );
    let answer = ask("locked", false);
    assert_eq!(
        (answer.status, answer.code().as_str()),
        (500, "backend_key_missing"),
        "{}",
        answer.text
    );
    assert!(
        answer.text.contains("PLUGBOARD_TEST_KEY_NOBODY_SET"),
        "{}",
        answer.text
    );

    // A client that hangs up while the backend is silent: the backend's request is closed at
    // once, not when the idle timeout runs out.
    a.push(Reply::recorded("vllm-chat.sse", 16).fault(Fault::StallAfter(900)));
    let abandoned = a.abandoned();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        use futures::StreamExt;
        let response = reqwest::Client::new()
            .post(format!("{}/v1/chat/completions", server.base))
            .json(&json!({"model": "single", "stream": true, "messages": [{"role": "user", "content": "hi"}]}))
            .send()
            .await
            .expect("answers");
        let mut body = response.bytes_stream();
        let first = body.next().await.expect("a first chunk").expect("bytes");
        assert!(!first.is_empty());
        // Dropping the body closes the connection.
    });
    drop(runtime);
    let deadline = Instant::now() + Duration::from_millis(800);
    while a.abandoned() == abandoned {
        assert!(
            Instant::now() < deadline,
            "the backend's request was closed when the client went (idle timeout is 1 s)"
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The server goes on serving.
    b.push(Reply::recorded("vllm-chat.sse", 8));
    a.push(Reply::recorded("vllm-chat.sse", 8));
    let answer = ask("pair", false);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(only_call(&answer), paris());
}

fn fallback_config(primary: &FixtureBackend, fallback: &FixtureBackend) -> String {
    format!(
        r#"
[[backends]]
name = "small"
kind = "vllm"
urls = ["{primary}"]

[[backends]]
name = "big"
kind = "openai"
urls = ["{fallback}"]

[[models]]
id = "small"
source = {{ backend = "small", model = "s" }}
fallback = ["big"]
fallback_on = ["error", "invalid_tool_call", "tool_call_missing"]

[[models]]
id = "big"
source = {{ backend = "big", model = "gpt-4o-mini" }}
"#,
        primary = primary.base,
        fallback = fallback.base,
    )
}

/// A call to a tool that was not offered, from the primary.
fn unknown_call() -> Reply {
    Reply::sse(&[
        json!({"choices": [{"index": 0, "delta": {"tool_calls": [{"index": 0, "id": "c", "type": "function", "function": {"name": "get_wether", "arguments": "{\"city\": \"Paris\"}"}}]}}]}).to_string(),
        json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}).to_string(),
        "[DONE]".into(),
    ])
}

/// A turn the primary gets wrong is served by the fallback, whole or streamed (held until
/// judged), and the response says who served it; `disable_fallbacks` and the escalation
/// header choose up front.
#[test]
fn a_turn_the_primary_gets_wrong_is_served_by_the_fallback() {
    let (small, big) = (FixtureBackend::start(), FixtureBackend::start());
    let (server, _dir) = gateway(&fallback_config(&small, &big), "small", &[]);
    for stream in [false, true] {
        small.push(unknown_call());
        big.push(Reply::recorded("openai-chat.sse", 5));
        let answer = post(
            &server.base,
            "/v1/chat/completions",
            &weather_request("small", stream),
            &[],
        );
        assert_eq!(answer.status, 200, "{}", answer.text);
        let plugboard = if stream {
            // Only the fallback's call: nothing of the primary's answer was sent.
            assert_eq!(streamed_calls(&answer), vec![paris()]);
            let events = answer.events();
            assert!(events.iter().all(|e| e["model"] == "big"), "{events:?}");
            events
                .iter()
                .rev()
                .find(|e| !e["plugboard"].is_null())
                .expect("a last chunk")["plugboard"]
                .clone()
        } else {
            assert_eq!(only_call(&answer), paris());
            assert_eq!(answer.header("x-plugboard-model"), "big");
            assert_eq!(answer.header("x-plugboard-backend"), "big");
            assert_eq!(answer.header("x-plugboard-attempts"), "2");
            answer.json()["plugboard"].clone()
        };
        let attempts = plugboard["attempts"].as_array().expect("attempts");
        assert_eq!(attempts.len(), 2, "{plugboard}");
        assert_eq!(attempts[0]["model"], "small");
        assert_eq!(attempts[0]["outcome"], "failed");
        assert_eq!(attempts[0]["reason"], "invalid_tool_call");
        assert!(
            attempts[0]["error"]
                .as_str()
                .unwrap_or("")
                .contains("get_wether")
        );
        assert_eq!(attempts[1]["model"], "big");
        assert_eq!(attempts[1]["outcome"], "served");
        assert!(attempts[1]["ms"].as_f64().is_some());
    }
    // A bad request is a 400 even when its stream would be held, and nothing is sent.
    let small_before = small.received().len();
    let mut bad = weather_request("small", true);
    bad["tools"][0]["function"]["parameters"] = json!({"type": "object", "properties": 5});
    let answer = post(&server.base, "/v1/chat/completions", &bad, &[]);
    assert_eq!(answer.status, 400, "{}", answer.text);
    assert_eq!(small.received().len(), small_before);

    // An error before the answer starts falls back too.
    small.push(Reply::status(
        500,
        "application/json",
        r#"{"error": "boom"}"#,
    ));
    big.push(Reply::recorded("openai-chat.sse", 64));
    let answer = post(
        &server.base,
        "/v1/chat/completions",
        &weather_request("small", false),
        &[],
    );
    assert_eq!(answer.header("x-plugboard-model"), "big", "{}", answer.text);
    assert_eq!(answer.json()["plugboard"]["attempts"][0]["reason"], "error");

    // disable_fallbacks: the primary's answer stands, its bad call dropped and reported.
    small.push(unknown_call());
    let mut request = weather_request("small", false);
    request["disable_fallbacks"] = json!(true);
    let big_before = big.received().len();
    let answer = post(&server.base, "/v1/chat/completions", &request, &[]);
    let body = answer.json();
    assert_eq!(answer.header("x-plugboard-model"), "small");
    assert!(
        body["choices"][0]["message"]["tool_calls"].is_null(),
        "{body}"
    );
    assert_eq!(
        body["plugboard"]["attempts"].as_array().map(Vec::len),
        Some(1)
    );
    assert_eq!(big.received().len(), big_before);

    // The escalation header skips the primary.
    let small_before = small.received().len();
    big.push(Reply::recorded("openai-chat.sse", 64));
    let answer = post(
        &server.base,
        "/v1/chat/completions",
        &weather_request("small", false),
        &[("x-plugboard-escalate", "1")],
    );
    assert_eq!(answer.header("x-plugboard-model"), "big");
    assert_eq!(
        small.received().len(),
        small_before,
        "nothing was sent to the primary"
    );

    // A request's own `fallbacks` list replaces the configured one (here: none to take).
    small.push(unknown_call());
    let mut request = weather_request("small", false);
    request["fallbacks"] = json!([]);
    let answer = post(&server.base, "/v1/chat/completions", &request, &[]);
    assert_eq!(answer.header("x-plugboard-model"), "small");

    // An unknown fallback named in a request is a clear 404, before anything is sent.
    let mut request = weather_request("small", false);
    request["fallbacks"] = json!(["no-such-model"]);
    let answer = post(&server.base, "/v1/chat/completions", &request, &[]);
    assert_eq!(answer.status, 404, "{}", answer.text);

    // The metric counts each fallback with its reason.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let metrics = runtime.block_on(async {
        reqwest::get(format!("{}/metrics", server.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    });
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("plugboard_fallbacks_total")
                && l.contains("reason=\"invalid_tool_call\"")
                && l.contains("from=\"small\"")),
        "{metrics}"
    );
    assert!(
        metrics.contains("plugboard_backend_requests_total"),
        "{metrics}"
    );
}

/// A second plugboard on the Qwen test model as a live remote: through a gateway with no
/// local model, raw mode (the gateway's adapter renders and parses, the remote only continues
/// text on `/v1/completions`) and chat mode give the same tool calls at temperature 0 as the
/// remote's own `/v1/chat/completions`; the real `openai` and `ollama` clients work through
/// the gateway; a local model whose context is too small falls back before sending anything.
#[test]
fn a_gateway_in_front_of_a_second_plugboard_gives_the_same_calls() {
    let Some(qwen) = models::qwen() else {
        return;
    };
    let qwen_path = qwen.to_str().expect("utf-8");
    let models_dir = qwen.parent().expect("a folder").to_str().expect("utf-8");
    let remote = TestServer::start(&["--model", "qwen2.5-coder-0.5b", "--models-dir", models_dir]);
    let config = format!(
        r#"
[[backends]]
name = "remote"
kind = "vllm"
urls = ["{remote}"]

[[models]]
id = "remote-raw"
source = {{ backend = "remote", model = "qwen2.5-coder-0.5b" }}
mode = "raw"
chat_template = {qwen_path:?}
adapter = "hermes"

[[models]]
id = "remote-chat"
source = {{ backend = "remote", model = "qwen2.5-coder-0.5b" }}
mode = "chat"

[[models]]
id = "tiny-context"
source = {qwen_path:?}
adapter = "hermes"
context_length = 32
fallback = ["remote-chat"]
"#,
        remote = remote.base,
    );
    let (gateway, _dir) = gateway(&config, "remote-raw", &[]);
    let direct = post(
        &remote.base,
        "/v1/chat/completions",
        &weather_request("qwen2.5-coder-0.5b", false),
        &[],
    );
    assert_eq!(direct.status, 200, "{}", direct.text);
    let expected = only_call(&direct);
    assert_eq!(expected.0, "get_weather");
    for model in ["remote-raw", "remote-chat"] {
        let answer = post(
            &gateway.base,
            "/v1/chat/completions",
            &weather_request(model, false),
            &[],
        );
        assert_eq!(answer.status, 200, "{model}: {}", answer.text);
        assert_eq!(only_call(&answer), expected, "{model}");
        let answer = post(
            &gateway.base,
            "/v1/chat/completions",
            &weather_request(model, true),
            &[],
        );
        assert_eq!(
            streamed_calls(&answer),
            vec![expected.clone()],
            "{model} streamed"
        );
    }
    // plugboard's /v1/completions speaks vLLM's dialect: the stop string kept on request,
    // `stop_reason` naming what stopped it; through the gateway, a remote model completes too.
    let completion = |base: &str, model: &str, extra: Value| {
        let mut body = json!({
            "model": model,
            "prompt": "<|im_start|>user\nName three colours, separated by commas.<|im_end|>\n<|im_start|>assistant\n",
            "max_tokens": 24,
            "temperature": 0,
        });
        for (k, v) in extra.as_object().expect("an object") {
            body[k] = v.clone();
        }
        let answer = post(base, "/v1/completions", &body, &[]);
        assert_eq!(answer.status, 200, "{}", answer.text);
        answer.json()["choices"][0].clone()
    };
    let whole = completion(&remote.base, "qwen2.5-coder-0.5b", json!({}));
    assert_eq!(whole["finish_reason"], "stop", "{whole}");
    assert!(
        whole["stop_reason"].is_null(),
        "ended by the model's own end token, as vLLM says it: {whole}"
    );
    let kept = completion(
        &remote.base,
        "qwen2.5-coder-0.5b",
        json!({"stop": [","], "include_stop_str_in_output": true}),
    );
    assert_eq!(kept["stop_reason"], ",", "{kept}");
    assert!(kept["text"].as_str().unwrap_or("").ends_with(','), "{kept}");
    let cut = completion(&remote.base, "qwen2.5-coder-0.5b", json!({"stop": [","]}));
    assert!(!cut["text"].as_str().unwrap_or(",").contains(','), "{cut}");
    let through = completion(&gateway.base, "remote-raw", json!({}));
    assert_eq!(
        through["text"], whole["text"],
        "the same text through the gateway"
    );
    assert_eq!(through["stop_reason"], whole["stop_reason"]);

    // Raw mode's text came back with its markers: the gateway's adapter parsed it.
    let plain = json!({"model": "remote-raw", "messages": [{"role": "user", "content": "Say hello."}], "max_tokens": 8, "temperature": 0});
    let answer = post(&gateway.base, "/v1/chat/completions", &plain, &[]);
    let content = answer.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        !content.is_empty() && !content.contains("<|im_end|>"),
        "{content}"
    );

    // The real clients, streamed and not, through the gateway.
    let report = gateway.run_client("gateway_client.py", &["remote-raw"]);
    for key in ["openai", "openai_stream", "ollama", "ollama_stream"] {
        assert_eq!(report[key]["name"], expected.0, "{key}: {report}");
        assert_eq!(report[key]["arguments"], expected.1, "{key}: {report}");
    }

    // Too long for the local model's context: the fallback serves, chosen before sending.
    let long = json!({
        "model": "tiny-context",
        "messages": [{"role": "user", "content": "Please tell me, in as much detail as you can, what the weather in Paris is like today."}],
        "tools": weather_tools(),
        "temperature": 0,
    });
    let answer = post(&gateway.base, "/v1/chat/completions", &long, &[]);
    assert_eq!(answer.status, 200, "{}", answer.text);
    assert_eq!(answer.header("x-plugboard-model"), "remote-chat");
    let attempts = answer.json()["plugboard"]["attempts"].clone();
    assert_eq!(attempts[0]["reason"], "context_overflow", "{attempts}");
}
