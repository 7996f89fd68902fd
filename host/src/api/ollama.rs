//! Ollama's API: `/api/chat` and `/api/generate` (NDJSON streams), `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`. Errors are Ollama's `{"error": "…"}`.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as HttpRouter};
use futures::stream::{self, StreamExt};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::error::ApiError;
use super::openai::{Served, escalates};
use super::{ApiJson, AppState};
use crate::chat::ChatRequest;
use crate::router::{
    ChatEvent, ChatParams, ChatStream, CompleteParams, JsonOutput, PromptInput, RouterError,
    SamplingOverrides, Summary,
};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/api/chat", post(chat))
        .route("/api/generate", post(generate))
        .route("/api/tags", get(tags))
        .route("/api/show", post(show))
        .route("/api/ps", get(ps))
        .route("/api/version", get(version))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Ollama's `options`, the ones that mean something here.
#[derive(Deserialize, Default)]
struct Options {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    min_p: Option<f32>,
    seed: Option<i64>,
    num_predict: Option<i64>,
    stop: Option<Vec<String>>,
    repeat_penalty: Option<f32>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
}

impl Options {
    fn overrides(&self) -> SamplingOverrides {
        SamplingOverrides {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            seed: self.seed.map(|s| s as u64),
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self.repeat_penalty,
        }
    }

    fn max_tokens(&self) -> Option<usize> {
        self.num_predict.filter(|n| *n > 0).map(|n| n as usize)
    }
}

#[derive(Deserialize)]
struct ChatBody {
    model: String,
    #[serde(default)]
    messages: Vec<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    options: Option<Options>,
    /// Streams unless set to false.
    stream: Option<bool>,
    #[serde(default)]
    format: Option<Value>,
    /// plugboard's own: `false` turns constrained decoding off for this request.
    #[serde(default)]
    constrained: Option<bool>,
    /// Models to fall back to, replacing the configured ones.
    #[serde(default)]
    fallbacks: Option<Vec<String>>,
    #[serde(default)]
    disable_fallbacks: bool,
}

/// Ollama messages in OpenAI's shape: calls get a type, arguments objects stay objects, a tool
/// message's `tool_name` becomes its `name`.
fn openai_message(message: &Value) -> Value {
    let mut m = message.clone();
    if let Some(object) = m.as_object_mut() {
        object.remove("images");
        object.remove("thinking");
        if let Some(name) = object.remove("tool_name") {
            object.insert("name".into(), name);
        }
        if let Some(Value::Array(calls)) = object.get_mut("tool_calls") {
            for call in calls.iter_mut() {
                if let Some(c) = call.as_object_mut() {
                    c.entry("type").or_insert_with(|| json!("function"));
                }
            }
        }
    }
    m
}

fn problem(e: RouterError) -> ApiError {
    ApiError::from(&e).ollama()
}

fn stats(summary: &Summary) -> Map<String, Value> {
    let ns = |ms: f64| (ms * 1e6) as u64;
    let u = &summary.usage;
    let mut m = Map::new();
    m.insert(
        "done_reason".into(),
        json!(if summary.finish == crate::router::Finish::Length {
            "length"
        } else {
            "stop"
        }),
    );
    m.insert(
        "total_duration".into(),
        json!(ns(u.queue_ms + u.prefill_ms + u.decode_ms)),
    );
    m.insert("load_duration".into(), json!(0));
    m.insert("prompt_eval_count".into(), json!(u.prompt_tokens));
    m.insert("prompt_eval_duration".into(), json!(ns(u.prefill_ms)));
    m.insert("eval_count".into(), json!(u.completion_tokens));
    m.insert("eval_duration".into(), json!(ns(u.decode_ms)));
    m
}

fn ndjson(lines: impl futures::Stream<Item = Value> + Send + 'static) -> Response {
    let body =
        Body::from_stream(lines.map(|v| Ok::<_, std::convert::Infallible>(format!("{v}\n"))));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// One NDJSON line per chat event; the last has `done: true` and the statistics.
fn chat_lines(stream: ChatStream) -> impl futures::Stream<Item = Value> + Send + 'static {
    let model = stream.model.clone();
    stream::unfold((stream.events, false), move |(mut events, done)| {
        let model = model.clone();
        async move {
            if done {
                return None;
            }
            let line = |message: Value, is_done: bool| json!({"model": model, "created_at": now(), "message": message, "done": is_done});
            let out = match events.recv().await? {
                ChatEvent::Content { text, .. } => {
                    line(json!({"role": "assistant", "content": text}), false)
                }
                ChatEvent::Reasoning(text) => line(
                    json!({"role": "assistant", "content": "", "thinking": text}),
                    false,
                ),
                ChatEvent::ToolCall(call) => line(
                    json!({"role": "assistant", "content": "", "tool_calls": [
                        {"function": {"name": call.name, "arguments": serde_json::from_str::<Value>(&call.arguments).unwrap_or(json!({}))}}
                    ]}),
                    false,
                ),
                ChatEvent::Error(e) => {
                    return Some((json!({"error": e.to_string()}), (events, true)));
                }
                ChatEvent::Done(summary) => {
                    let mut last = line(json!({"role": "assistant", "content": ""}), true);
                    if let Some(o) = last.as_object_mut() {
                        o.extend(stats(&summary));
                    }
                    return Some((last, (events, true)));
                }
            };
            Some((out, (events, false)))
        }
    })
}

async fn chat(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Response, ApiError> {
    let options = body.options.unwrap_or_default();
    let chat = ChatRequest {
        messages: body.messages.iter().map(openai_message).collect(),
        tools: body.tools,
        ..ChatRequest::default()
    };
    let params = ChatParams {
        model: body.model,
        chat,
        sampling: options.overrides(),
        max_tokens: options.max_tokens(),
        stop: options.stop.clone().unwrap_or_default(),
        logprobs: None,
        json: json_output(body.format.as_ref()),
        constrained: body.constrained.unwrap_or(true),
        fallbacks: body.fallbacks,
        disable_fallbacks: body.disable_fallbacks,
        escalate: escalates(&headers),
    };
    let stream = state.router.chat(params).await.map_err(problem)?;
    let served = Served::of(&stream);
    if body.stream.unwrap_or(true) {
        return Ok(served.headers(ndjson(chat_lines(stream))));
    }
    // Not streamed: one object with the whole message.
    let model = stream.model.clone();
    let mut lines = Box::pin(chat_lines(stream));
    let mut content = String::new();
    let mut thinking = String::new();
    let mut calls = Vec::new();
    while let Some(line) = lines.next().await {
        if let Some(error) = line.get("error").and_then(Value::as_str) {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                error,
            )
            .ollama());
        }
        let message = &line["message"];
        content.push_str(message["content"].as_str().unwrap_or(""));
        thinking.push_str(message["thinking"].as_str().unwrap_or(""));
        if let Some(c) = message["tool_calls"].as_array() {
            calls.extend(c.iter().cloned());
        }
        if line["done"] == json!(true) {
            let mut message = json!({"role": "assistant", "content": content});
            if !thinking.is_empty() {
                message["thinking"] = json!(thinking);
            }
            if !calls.is_empty() {
                message["tool_calls"] = Value::Array(calls);
            }
            let mut out = line.clone();
            out["message"] = message;
            out["model"] = json!(model);
            return Ok(served.headers(Json(out).into_response()));
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the generation ended without a result",
    )
    .ollama())
}

#[derive(Deserialize)]
struct GenerateBody {
    model: String,
    #[serde(default)]
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    /// The prompt goes to the model as it is, without the chat template.
    #[serde(default)]
    raw: bool,
    #[serde(default)]
    options: Option<Options>,
    stream: Option<bool>,
    #[serde(default)]
    format: Option<Value>,
    /// plugboard's own: `false` turns constrained decoding off for this request.
    #[serde(default)]
    constrained: Option<bool>,
}

async fn generate(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Response, ApiError> {
    let options = body.options.unwrap_or_default();
    let stream = if body.raw {
        state
            .router
            .complete(CompleteParams {
                model: body.model,
                prompt: PromptInput::Text(body.prompt),
                sampling: options.overrides(),
                max_tokens: options.max_tokens(),
                stop: options.stop.clone().unwrap_or_default(),
                logprobs: None,
                add_special_tokens: true,
                skip_special_tokens: false,
                include_stop_str_in_output: false,
            })
            .await
    } else {
        let mut messages = Vec::new();
        if let Some(system) = body.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": body.prompt}));
        state
            .router
            .chat(ChatParams {
                model: body.model,
                chat: ChatRequest {
                    messages,
                    ..ChatRequest::default()
                },
                sampling: options.overrides(),
                max_tokens: options.max_tokens(),
                stop: options.stop.clone().unwrap_or_default(),
                logprobs: None,
                json: json_output(body.format.as_ref()),
                constrained: body.constrained.unwrap_or(true),
                fallbacks: None,
                disable_fallbacks: false,
                escalate: false,
            })
            .await
    }
    .map_err(problem)?;
    let lines = chat_lines(stream).map(|mut line| {
        // /api/generate speaks of a `response`, not a `message`.
        if let Some(o) = line.as_object_mut()
            && let Some(message) = o.remove("message")
        {
            let text = message["content"].as_str().unwrap_or("").to_string();
            o.insert("response".into(), json!(text));
            if let Some(thinking) = message.get("thinking") {
                o.insert("thinking".into(), thinking.clone());
            }
        }
        line
    });
    if body.stream.unwrap_or(true) {
        return Ok(ndjson(lines));
    }
    let mut lines = Box::pin(lines);
    let mut response = String::new();
    while let Some(line) = lines.next().await {
        if let Some(error) = line.get("error").and_then(Value::as_str) {
            return Err(ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                error,
            )
            .ollama());
        }
        response.push_str(line["response"].as_str().unwrap_or(""));
        if line["done"] == json!(true) {
            let mut out = line.clone();
            out["response"] = json!(response);
            return Ok(Json(out).into_response());
        }
    }
    Err(ApiError::new(
        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the generation ended without a result",
    )
    .ollama())
}

fn details(entry: &crate::registry::ModelEntry) -> Value {
    let arch = entry
        .loaded()
        .map(|e| e.info().architecture.clone())
        .unwrap_or_default();
    json!({
        "parent_model": "",
        "format": "gguf",
        "family": arch,
        "families": if arch.is_empty() { Value::Null } else { json!([arch]) },
        "parameter_size": "",
        "quantization_level": "",
    })
}

fn modified(entry: &crate::registry::ModelEntry) -> String {
    std::fs::metadata(&entry.path)
        .and_then(|m| m.modified())
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
        .unwrap_or_else(|_| now())
}

async fn tags(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .router
        .registry
        .all()
        .filter(|m| m.available())
        .map(|m| {
            let size = std::fs::metadata(&m.path).map(|md| md.len()).unwrap_or(0);
            json!({"name": m.id(), "model": m.id(), "modified_at": modified(m), "size": size, "digest": "", "details": details(m)})
        })
        .collect();
    Json(json!({"models": models}))
}

#[derive(Deserialize)]
struct ShowBody {
    #[serde(alias = "name")]
    model: String,
}

async fn show(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ShowBody>,
) -> Result<Json<Value>, ApiError> {
    let router = state.router.clone();
    let model = body.model.clone();
    let (entry, engine, plugin) = tokio::task::spawn_blocking(move || router.resolve(&model))
        .await
        .map_err(|e| {
            ApiError::new(
                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
            .ollama()
        })?
        .map_err(problem)?;
    let info = engine.info();
    let mut capabilities = vec!["completion"];
    if plugin.info().capabilities.tools {
        capabilities.push("tools");
    }
    if plugin.info().capabilities.reasoning {
        capabilities.push("thinking");
    }
    Ok(Json(json!({
        "modelfile": "",
        "parameters": "",
        "template": info.chat_template.clone().unwrap_or_default(),
        "details": details(&entry),
        "model_info": {
            "general.architecture": info.architecture,
            "general.name": info.name,
            format!("{}.context_length", info.architecture): info.context_length,
        },
        "capabilities": capabilities,
        "modified_at": modified(&entry),
    })))
}

async fn ps(State(state): State<AppState>) -> Json<Value> {
    let models: Vec<Value> = state
        .router
        .registry
        .all()
        .filter_map(|m| {
            let engine = m.loaded()?;
            Some(json!({
                "name": m.id(), "model": m.id(), "size": engine.info().file_bytes, "digest": "",
                "details": details(m), "expires_at": "0001-01-01T00:00:00Z", "size_vram": 0,
            }))
        })
        .collect();
    Json(json!({"models": models}))
}

async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

/// Ollama's `format`: `"json"` for any JSON object, or a JSON Schema.
fn json_output(format: Option<&Value>) -> Option<JsonOutput> {
    match format? {
        Value::Object(_) => format.cloned().map(JsonOutput::Schema),
        Value::Null => None,
        _ => Some(JsonOutput::Object),
    }
}
