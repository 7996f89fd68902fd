//! Who may call a real `plugboard serve`: API keys with scopes (the real `openai` and `ollama`
//! clients bring theirs), origins a browser may call from, the host names a loopback server
//! answers to, and a non-loopback address refused without a key.

use serde_json::json;

use plugboard_tests::http::{get, get_with, post};
use plugboard_tests::{TestServer, models, plugboard_bin};

const APP_KEY: &str = "sk-app-0123456789abcdef";
const OPS_KEY: &str = "sk-ops-0123456789abcdef";

fn keyed_server() -> (TestServer, tempfile::NamedTempFile) {
    let keys = tempfile::NamedTempFile::new().expect("a file");
    std::fs::write(
        keys.path(),
        format!(
            "[[keys]]\nname = \"app\"\nkey = \"{APP_KEY}\"\nscopes = [\"inference\"]\n\n\
             [[keys]]\nname = \"ops\"\nkey = \"{OPS_KEY}\"\n"
        ),
    )
    .expect("written");
    let mut args = vec!["--api-keys", keys.path().to_str().expect("utf-8")];
    let qwen = models::qwen();
    let dir = qwen
        .as_ref()
        .and_then(|q| q.parent())
        .and_then(|p| p.to_str());
    if let Some(dir) = dir {
        args.extend(["--models-dir", dir]);
    }
    (TestServer::start(&args), keys)
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

#[test]
fn keys_are_asked_for_checked_and_scoped() {
    let (server, _keys) = keyed_server();
    let base = &server.base;
    let app = bearer(APP_KEY);
    let ops = bearer(OPS_KEY);

    // No key, a wrong key, a key in the query string: 401 in the API's own shape.
    let none = get(base, "/v1/models");
    assert_eq!(none.status, 401);
    assert_eq!(none.code(), "missing_api_key");
    assert_eq!(none.header("www-authenticate"), "Bearer");
    let wrong = get_with(
        base,
        "/v1/models",
        &[("authorization", "Bearer sk-wrong-0123456789abcdef")],
    );
    assert_eq!(
        (wrong.status, wrong.code()),
        (401, "invalid_api_key".into())
    );
    let query = get(base, &format!("/v1/models?api_key={APP_KEY}"));
    assert_eq!((query.status, query.code()), (401, "key_in_query".into()));
    let ollama = post(base, "/api/chat", &json!({"model": "x"}), &[]);
    assert_eq!(ollama.status, 401);
    assert!(
        ollama.json()["error"].is_string(),
        "Ollama's shape: {}",
        ollama.text
    );
    assert!(
        !server.log.lock().expect("log").contains("sk-wrong"),
        "keys are never logged"
    );

    // The inference key lists models but may not touch adapters, pulls or the tokenizer.
    assert_eq!(
        get_with(base, "/v1/models", &[("authorization", &app)]).status,
        200
    );
    let scoped = get_with(base, "/v1/adapters", &[("authorization", &app)]);
    assert_eq!(
        (scoped.status, scoped.code()),
        (403, "insufficient_scope".into())
    );
    let pull = post(
        base,
        "/api/pull",
        &json!({"model": "hf.co/a/b"}),
        &[("authorization", &app)],
    );
    assert_eq!(pull.status, 403);
    // The admin key may.
    assert_eq!(
        get_with(base, "/v1/adapters", &[("authorization", &ops)]).status,
        200
    );
    // The page, its files and the health check are public; the scheme's case does not matter.
    assert_eq!(get(base, "/").status, 200);
    assert_eq!(get(base, "/health").status, 200);
    assert_eq!(
        get_with(
            base,
            "/v1/models",
            &[("authorization", &format!("bearer {APP_KEY}"))]
        )
        .status,
        200
    );

    // The real clients bring their keys: the openai client's api_key, ollama's headers.
    if models::qwen().is_some() {
        let script = r#"
import json, sys, openai, ollama
base, key = sys.argv[1], sys.argv[2]
client = openai.OpenAI(base_url=f"{base}/v1", api_key=key, max_retries=0)
reply = client.chat.completions.create(model="qwen2.5-coder-0.5b", max_tokens=4, temperature=0,
    messages=[{"role": "user", "content": "Say hi"}])
refused = None
try:
    openai.OpenAI(base_url=f"{base}/v1", api_key="sk-nope-0123456789abcdef", max_retries=0).models.list()
except openai.AuthenticationError as e:
    refused = e.status_code
chat = ollama.Client(host=base, headers={"Authorization": f"Bearer {key}"}).chat(
    model="qwen2.5-coder-0.5b", messages=[{"role": "user", "content": "Say hi"}],
    options={"num_predict": 4, "temperature": 0})
print(json.dumps({"openai": reply.choices[0].message.content, "refused": refused,
                  "ollama": chat.message.content}))
"#;
        let out = server.run_inline(script, &[APP_KEY]);
        assert!(out["openai"].is_string(), "{out}");
        assert_eq!(out["refused"], 401, "{out}");
        assert!(out["ollama"].is_string(), "{out}");
    }
}

#[test]
fn browsers_may_call_from_loopback_and_allowed_origins_only() {
    let server = TestServer::start(&[
        "--no-builtins",
        "--allowed-origins",
        "https://app.example.com",
    ]);
    let base = &server.base;
    // A page elsewhere cannot drive the server, even with a "simple" request that needs no
    // preflight (a text/plain POST would otherwise start a pull).
    let evil = get_with(base, "/v1/models", &[("origin", "http://evil.example")]);
    assert_eq!(
        (evil.status, evil.code()),
        (403, "origin_not_allowed".into())
    );
    let pull = post(
        base,
        "/api/pull",
        &json!({"model": "hf.co/a/b"}),
        &[("origin", "http://evil.example")],
    );
    assert_eq!(pull.status, 403);
    // Loopback pages and the allowed origin may, and are told so by CORS.
    for origin in [
        "http://localhost:5173",
        "https://app.example.com",
        base.as_str(),
    ] {
        let answer = get_with(base, "/v1/models", &[("origin", origin)]);
        assert_eq!(answer.status, 200, "{origin}");
        assert_eq!(answer.header("access-control-allow-origin"), origin);
    }
    // A page of an allowed origin may send its key: the preflight allows `Authorization`
    // (a `*` would not cover it).
    let preflight = server.run_inline(
        r#"
import json, sys, urllib.request
request = urllib.request.Request(sys.argv[1] + "/v1/models", method="OPTIONS", headers={
    "Origin": "https://app.example.com", "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "authorization"})
with urllib.request.urlopen(request) as response:
    print(json.dumps({"status": response.status,
                      "headers": response.headers.get("access-control-allow-headers", "")}))
"#,
        &[],
    );
    assert_eq!(preflight["status"], 200, "{preflight}");
    assert!(
        preflight["headers"]
            .as_str()
            .unwrap_or("")
            .to_lowercase()
            .contains("authorization"),
        "{preflight}"
    );
    // DNS rebinding: a name of the attacker's that resolves to this loopback server.
    let rebound = get_with(base, "/v1/models", &[("host", "rebind.evil.example")]);
    assert_eq!(
        (rebound.status, rebound.code()),
        (403, "host_not_allowed".into())
    );
}

#[test]
fn a_non_loopback_address_without_a_key_is_refused() {
    let output = std::process::Command::new(plugboard_bin())
        .args(["serve", "--host", "0.0.0.0", "--port", "0", "--no-builtins"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
}
