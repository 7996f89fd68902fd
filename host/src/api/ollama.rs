//! Ollama's API: `/api/chat` and `/api/generate` (NDJSON streams), `/api/tags`, `/api/show`,
//! `/api/ps`, `/api/version`. Errors are Ollama's `{"error": "…"}`.
//!
//! Long because Ollama's shapes are many (requests, options, NDJSON lines, model details),
//! each described for `/openapi.json`; each handler is a short translation to [`crate::turn`].

use std::borrow::Borrow;
use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, OllamaErrorBody};
use super::openai::{Served, escalates};
use super::{ApiJson, AppState};
use crate::chat::ChatRequest;
use crate::registry::KeepAlive;
use crate::registry::ModelEntry;
use crate::turn::{
    ChatEvent, ChatParams, ChatStream, CompleteParams, JsonOutput, PromptInput, SamplingOverrides,
    Summary, ToolCallOut, TurnError,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat))
        .routes(routes!(generate))
        .routes(routes!(tags))
        .routes(routes!(show))
        .routes(routes!(ps))
        .routes(routes!(version))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// Ollama's `options`, the ones that mean something here.
#[derive(Deserialize, Default, ToSchema)]
#[schema(as = OllamaOptions)]
struct Options {
    // Unbounded, as Ollama takes them: a temperature ≤ 0 is greedy, a top_p ≥ 1 is off.
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

#[derive(Deserialize, ToSchema)]
struct ChatBody {
    model: String,
    /// None: the model is loaded (or, with `keep_alive: 0`, unloaded) and nothing generated.
    #[serde(default)]
    #[schema(value_type = Vec<crate::chat::MessageSchema>)]
    messages: Vec<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::chat::ToolSchema>>)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    options: Option<Options>,
    /// Streams unless set to false.
    stream: Option<bool>,
    #[serde(default)]
    #[schema(value_type = Option<FormatSchema>)]
    format: Option<Value>,
    /// plugboard's own: `false` turns constrained decoding off for this request.
    #[serde(default)]
    constrained: Option<bool>,
    /// Models to fall back to, replacing the configured ones.
    #[serde(default)]
    fallbacks: Option<Vec<String>>,
    #[serde(default)]
    disable_fallbacks: bool,
    /// How long the model stays loaded after this request (`"5m"`, `0`, `-1`).
    #[serde(default)]
    #[schema(schema_with = keep_alive_schema)]
    keep_alive: Option<Value>,
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

/// A turn's error in Ollama's shape, owned or shared (as a turn's events carry it).
fn problem(e: impl Borrow<TurnError>) -> ApiError {
    ApiError::from(e.borrow()).ollama()
}

/// One `/api/chat` line; not streamed, the whole answer.
#[derive(Serialize, ToSchema)]
struct ChatLine {
    model: String,
    created_at: String,
    message: Message,
    done: bool,
    /// On the last line.
    #[serde(flatten)]
    stats: Stats,
}

impl ChatLine {
    /// The last line, and only it, is done and has the statistics.
    fn new(model: String, message: Message, stats: Option<Stats>) -> ChatLine {
        ChatLine {
            model,
            created_at: now(),
            message,
            done: stats.is_some(),
            stats: stats.unwrap_or_default(),
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = OllamaMessage)]
struct Message {
    role: &'static str,
    content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCall>>,
}

impl Message {
    fn assistant(content: String) -> Message {
        Message {
            role: "assistant",
            content,
            thinking: None,
            tool_calls: None,
        }
    }
}

#[derive(Serialize, ToSchema)]
#[schema(as = OllamaToolCall)]
struct ToolCall {
    function: Function,
}

/// Ollama's arguments are an object, not OpenAI's string of JSON.
#[derive(Serialize, ToSchema)]
#[schema(as = OllamaFunction)]
struct Function {
    name: String,
    arguments: Value,
}

impl From<ToolCallOut> for ToolCall {
    fn from(call: ToolCallOut) -> ToolCall {
        ToolCall {
            function: Function {
                name: call.name,
                arguments: serde_json::from_str(&call.arguments).unwrap_or_else(|_| json!({})),
            },
        }
    }
}

/// One `/api/generate` line, or the whole answer: a `response` where chat has a `message`.
#[derive(Serialize, ToSchema)]
struct GenerateLine {
    model: String,
    created_at: String,
    response: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    thinking: Option<String>,
    done: bool,
    /// On the last line.
    #[serde(flatten)]
    stats: Stats,
}

impl From<ChatLine> for GenerateLine {
    fn from(line: ChatLine) -> GenerateLine {
        GenerateLine {
            model: line.model,
            created_at: line.created_at,
            response: line.message.content,
            thinking: line.message.thinking,
            done: line.done,
            stats: line.stats,
        }
    }
}

/// How a turn ended and what it took (nanoseconds), on the last line; all absent before it,
/// and all but `done_reason` on an answer that only loaded or unloaded the model.
#[derive(Serialize, ToSchema, Default)]
struct Stats {
    /// `stop`, `length`, or `load` / `unload` for a request with nothing to generate.
    #[serde(skip_serializing_if = "Option::is_none")]
    done_reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    total_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    load_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_eval_duration: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_count: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eval_duration: Option<u64>,
}

impl Stats {
    fn of(summary: &Summary) -> Stats {
        let ns = |ms: f64| (ms * 1e6) as u64;
        let u = &summary.usage;
        Stats {
            done_reason: Some(if summary.finish == crate::turn::Finish::Length {
                "length"
            } else {
                "stop"
            }),
            total_duration: Some(ns(u.queue_ms + u.prefill_ms + u.decode_ms)),
            load_duration: Some(0),
            prompt_eval_count: Some(u.prompt_tokens),
            prompt_eval_duration: Some(ns(u.prefill_ms)),
            eval_count: Some(u.completion_tokens),
            eval_duration: Some(ns(u.decode_ms)),
        }
    }

    /// A request that only loaded or unloaded its model.
    fn loaded(reason: &'static str) -> Stats {
        Stats {
            done_reason: Some(reason),
            ..Stats::default()
        }
    }
}

/// An NDJSON response; an error ends it with Ollama's `{"error": "…"}` line.
fn ndjson<L: Serialize>(
    lines: impl Stream<Item = Result<L, Arc<TurnError>>> + Send + 'static,
) -> Response {
    let body = Body::from_stream(lines.map(|line| {
        match line {
            Ok(line) => serde_json::to_string(&line),
            Err(e) => serde_json::to_string(&json!({"error": e.to_string()})),
        }
        .map(|line| line + "\n")
    }));
    ([(header::CONTENT_TYPE, "application/x-ndjson")], body).into_response()
}

/// One line per chat event; the last has `done: true` and the statistics.
fn chat_lines(
    stream: ChatStream,
) -> impl Stream<Item = Result<ChatLine, Arc<TurnError>>> + Send + 'static {
    let model = stream.model.clone();
    stream::unfold((stream.events, false), move |(mut events, done)| {
        let model = model.clone();
        async move {
            if done {
                return None;
            }
            let message = match events.recv().await? {
                ChatEvent::Content { text, .. } => Message::assistant(text),
                ChatEvent::Reasoning(text) => Message {
                    thinking: Some(text),
                    ..Message::assistant(String::new())
                },
                ChatEvent::ToolCall(call) => Message {
                    tool_calls: Some(vec![call.into()]),
                    ..Message::assistant(String::new())
                },
                ChatEvent::Error(e) => return Some((Err(e), (events, true))),
                ChatEvent::Done(summary) => {
                    let last = ChatLine::new(
                        model,
                        Message::assistant(String::new()),
                        Some(Stats::of(&summary)),
                    );
                    return Some((Ok(last), (events, true)));
                }
            };
            Some((Ok(ChatLine::new(model, message, None)), (events, false)))
        }
    })
}

/// A chat turn, streamed as NDJSON lines unless `stream` is false.
#[utoipa::path(post, path = "/api/chat", tag = "ollama",
    params(("x-plugboard-escalate" = Option<String>, Header, description = "`1`: start with the request's first fallback")),
    request_body = ChatBody,
    responses(
        (status = 200, description = "The answer, or its lines (the last has `done: true` and the statistics)", content(
            (ChatLine = "application/json"),
            (String = "application/x-ndjson"))),
        (status = 400, description = "An invalid request, or one longer than the model's context", body = OllamaErrorBody),
        (status = 422, description = "The model's tool call failed validation", body = OllamaErrorBody),
        (status = 404, description = "No such model, or its file is not downloaded", body = OllamaErrorBody),
        (status = 500, description = "The model or its adapter failed", body = OllamaErrorBody),
        (status = 502, description = "A remote backend failed", body = OllamaErrorBody),
        (status = 503, description = "The model's queue is full, or its backend is overloaded", body = OllamaErrorBody),
        (status = 507, description = "The model does not fit in memory", body = OllamaErrorBody),
    ))]
async fn chat(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    ApiJson(body): ApiJson<ChatBody>,
) -> Result<Response, ApiError> {
    let options = body.options.unwrap_or_default();
    let keep = keep_alive(body.keep_alive.as_ref())?;
    if body.messages.is_empty() {
        let (model, reason) = load_or_unload(&state, &body.model, keep).await?;
        let answer = ChatLine::new(
            model,
            Message::assistant(String::new()),
            Some(Stats::loaded(reason)),
        );
        return Ok(Json(answer).into_response());
    }
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
        keep_alive: keep,
    };
    let mut stream = state.turns.chat(params).await.map_err(problem)?;
    let served = Served::of(&stream);
    if body.stream.unwrap_or(true) {
        return Ok(served.headers(ndjson(chat_lines(stream))));
    }
    let turn = stream.collect().await.map_err(problem)?;
    let message = Message {
        thinking: Some(turn.reasoning).filter(|t| !t.is_empty()),
        tool_calls: (!turn.calls.is_empty())
            .then(|| turn.calls.into_iter().map(ToolCall::from).collect()),
        ..Message::assistant(turn.content)
    };
    let answer = ChatLine::new(stream.model, message, Some(Stats::of(&turn.summary)));
    Ok(served.headers(Json(answer).into_response()))
}

#[derive(Deserialize, ToSchema)]
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
    #[schema(value_type = Option<FormatSchema>)]
    format: Option<Value>,
    /// plugboard's own: `false` turns constrained decoding off for this request.
    #[serde(default)]
    constrained: Option<bool>,
    /// How long the model stays loaded after this request (`"5m"`, `0`, `-1`).
    #[serde(default)]
    #[schema(schema_with = keep_alive_schema)]
    keep_alive: Option<Value>,
}

/// `format`, as the API description shows it (read by [`json_output`]).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum FormatSchema {
    Json(JsonWord),
    /// JSON that this schema accepts.
    #[schema(value_type = Object)]
    Schema(Map<String, Value>),
}

/// `"json"`: any JSON object.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum JsonWord {
    Json,
}

/// `keep_alive`, as the API description shows it (read by [`KeepAlive::parse`]): a duration
/// (`"5m"`, `"1h30m"`, `"90s"`) or seconds; 0 unloads at once, a negative one keeps the model
/// loaded.
fn keep_alive_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
    let one_of = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::String).pattern(Some(
            r"^\s*-?(([0-9]+\.?[0-9]*|\.[0-9]+)|(([0-9]+\.?[0-9]*|\.[0-9]+)(ns|us|µs|ms|s|m|h))+)\s*$",
        )))
        .item(ObjectBuilder::new().schema_type(Type::Number))
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .build();
    Schema::OneOf(one_of)
}

/// A request's `keep_alive`, as Ollama reads it; a bad one is a 400.
fn keep_alive(value: Option<&Value>) -> Result<Option<KeepAlive>, ApiError> {
    value
        .filter(|v| !v.is_null())
        .map(KeepAlive::parse)
        .transpose()
        .map_err(|e| ApiError::bad_request(e, Some("keep_alive")).ollama())
}

/// An empty request (no messages, no prompt) loads the model, or with `keep_alive: 0`
/// unloads it, and says which: `done_reason` `load` or `unload`.
async fn load_or_unload(
    state: &AppState,
    model: &str,
    keep: Option<KeepAlive>,
) -> Result<(String, &'static str), ApiError> {
    let (model, loaded) = state.turns.preload(model, keep).await.map_err(problem)?;
    Ok((model, if loaded { "load" } else { "unload" }))
}

/// A completion of a prompt (through the chat template unless `raw`), streamed as NDJSON lines
/// unless `stream` is false.
#[utoipa::path(post, path = "/api/generate", tag = "ollama",
    request_body = GenerateBody,
    responses(
        (status = 200, description = "The answer, or its lines (the last has `done: true` and the statistics)", content(
            (GenerateLine = "application/json"),
            (String = "application/x-ndjson"))),
        (status = 400, description = "An invalid request, or one longer than the model's context", body = OllamaErrorBody),
        (status = 404, description = "No such model, or its file is not downloaded", body = OllamaErrorBody),
        (status = 500, description = "The model or its adapter failed", body = OllamaErrorBody),
        (status = 502, description = "A remote backend failed", body = OllamaErrorBody),
        (status = 503, description = "The model's queue is full, or its backend is overloaded", body = OllamaErrorBody),
        (status = 507, description = "The model does not fit in memory", body = OllamaErrorBody),
    ))]
async fn generate(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Response, ApiError> {
    let options = body.options.unwrap_or_default();
    let keep = keep_alive(body.keep_alive.as_ref())?;
    if body.prompt.is_empty() && body.system.is_none() {
        let (model, reason) = load_or_unload(&state, &body.model, keep).await?;
        let answer = ChatLine::new(
            model,
            Message::assistant(String::new()),
            Some(Stats::loaded(reason)),
        );
        return Ok(Json(GenerateLine::from(answer)).into_response());
    }
    let mut stream = if body.raw {
        state
            .turns
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
                keep_alive: keep,
            })
            .await
    } else {
        let mut messages = Vec::new();
        if let Some(system) = body.system {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": body.prompt}));
        state
            .turns
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
                keep_alive: keep,
            })
            .await
    }
    .map_err(problem)?;
    let served = Served::of(&stream);
    if body.stream.unwrap_or(true) {
        return Ok(served.headers(ndjson(
            chat_lines(stream).map(|line| line.map(GenerateLine::from)),
        )));
    }
    let turn = stream.collect().await.map_err(problem)?;
    Ok(served.headers(
        Json(GenerateLine {
            model: stream.model,
            created_at: now(),
            response: turn.content,
            thinking: Some(turn.reasoning).filter(|t| !t.is_empty()),
            done: true,
            stats: Stats::of(&turn.summary),
        })
        .into_response(),
    ))
}

/// A model's `details` in tags, show and ps.
#[derive(Serialize, ToSchema)]
struct Details {
    parent_model: &'static str,
    format: &'static str,
    family: String,
    families: Option<Vec<String>>,
    parameter_size: String,
    quantization_level: String,
}

fn details(entry: &ModelEntry) -> Details {
    let info = entry.describe();
    let family = info
        .as_ref()
        .map(|i| i.architecture.clone())
        .or_else(|| entry.loaded().map(|e| e.info().architecture.clone()))
        .unwrap_or_default();
    Details {
        parent_model: "",
        format: "gguf",
        families: (!family.is_empty()).then(|| vec![family.clone()]),
        family,
        parameter_size: info
            .as_ref()
            .map(|i| crate::engine::parameter_size(i.parameters))
            .unwrap_or_default(),
        quantization_level: info
            .as_ref()
            .and_then(|i| i.quantization.clone())
            .unwrap_or_default(),
    }
}

fn modified(entry: &ModelEntry) -> String {
    entry
        .path()
        .and_then(|p| std::fs::metadata(p).ok())
        .and_then(|m| m.modified().ok())
        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339())
        .unwrap_or_else(now)
}

/// A pulled file's SHA-256: its blob's name in the store (empty for other files).
fn digest(entry: &ModelEntry) -> String {
    entry
        .path()
        .and_then(|p| std::fs::canonicalize(p).ok())
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .filter(|n| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        .unwrap_or_default()
}

#[derive(Serialize, ToSchema)]
struct Models<T> {
    models: Vec<T>,
}

/// An `/api/tags` entry: a model that can serve.
#[derive(Serialize, ToSchema)]
struct Tag {
    name: String,
    model: String,
    modified_at: String,
    size: u64,
    digest: String,
    details: Details,
}

/// The models that can serve here (local files, pulled ones, remote ones), and the names
/// copies gave them.
#[utoipa::path(get, path = "/api/tags", tag = "ollama",
    responses((status = 200, description = "The models that can serve", body = Models<Tag>)))]
async fn tags(State(state): State<AppState>) -> Json<Models<Tag>> {
    let registry = Arc::clone(&state.turns.registry);
    let models = tokio::task::spawn_blocking(move || {
        let tag = |name: &str, m: &ModelEntry| Tag {
            name: name.into(),
            model: name.into(),
            modified_at: modified(m),
            size: m.describe().map(|i| i.file_bytes).unwrap_or(0),
            digest: digest(m),
            details: details(m),
        };
        let mut tags: Vec<Tag> = registry
            .all()
            .iter()
            .filter(|m| m.available())
            .map(|m| tag(m.id(), m))
            .collect();
        for (copy, model) in registry.copies() {
            if let Ok(m) = registry.get(&model) {
                tags.push(tag(&copy, &m));
            }
        }
        tags
    })
    .await
    .unwrap_or_default();
    Json(Models { models })
}

#[derive(Deserialize, ToSchema)]
struct ShowBody {
    #[serde(alias = "name")]
    model: String,
}

#[derive(Serialize, ToSchema)]
struct Show {
    modelfile: &'static str,
    parameters: &'static str,
    template: String,
    details: Details,
    /// GGUF metadata keys, one of them named after the architecture.
    model_info: Map<String, Value>,
    capabilities: Vec<&'static str>,
    modified_at: String,
}

/// A model's details from its file's header, without loading it; a remote model's from its
/// chat template.
#[utoipa::path(post, path = "/api/show", tag = "ollama",
    request_body = ShowBody,
    responses(
        (status = 200, description = "The model's details", body = Show),
        (status = 404, description = "No such model, or its file is not downloaded", body = OllamaErrorBody),
        (status = 500, description = "The model's file could not be read", body = OllamaErrorBody),
    ))]
async fn show(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<ShowBody>,
) -> Result<Json<Show>, ApiError> {
    let entry = state
        .turns
        .registry
        .get(&body.model)
        .map_err(|e| problem(TurnError::Registry(e)))?;
    let described = Arc::clone(&entry);
    let info = tokio::task::spawn_blocking(move || described.describe())
        .await
        .ok()
        .flatten();
    let template = match (&entry.remote, &info) {
        (Some(remote), _) => remote.template.chat_template.clone(),
        (None, Some(info)) => info.chat_template.clone(),
        // Not a GGUF (a checkpoint folder): its template is the loaded engine's.
        (None, None) if entry.path().is_some() => {
            let turns = state.turns.clone();
            let model = entry.id().to_string();
            let engine = tokio::task::spawn_blocking(move || turns.resolve(&model))
                .await
                .map_err(|e| {
                    ApiError::new(
                        axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                        "server_error",
                        e.to_string(),
                    )
                    .ollama()
                })?
                .map_err(problem)?
                .engine;
            engine.info().chat_template.clone()
        }
        (None, None) => {
            return Err(problem(TurnError::Registry(
                crate::registry::RegistryError::NotDownloaded {
                    id: entry.id().to_string(),
                    path: entry
                        .hub_file()
                        .map(|h| h.to_string())
                        .unwrap_or_else(|| "its file".into()),
                },
            )));
        }
    };
    let adapter = entry
        .decl
        .adapter
        .clone()
        .unwrap_or_else(|| crate::registry::adapter_for(template.as_deref()).to_string());
    let mut capabilities = vec!["completion"];
    if let Some(plugin) = state.turns.plugins.get(&adapter) {
        if plugin.info().capabilities.tools {
            capabilities.push("tools");
        }
        if plugin.info().capabilities.reasoning {
            capabilities.push("thinking");
        }
    }
    let mut model_info = Map::new();
    if let Some(info) = &info {
        model_info.insert(
            "general.architecture".into(),
            info.architecture.clone().into(),
        );
        model_info.insert("general.name".into(), info.name.clone().into());
        model_info.insert("general.parameter_count".into(), info.parameters.into());
        model_info.insert(
            format!("{}.context_length", info.architecture),
            info.context_length.into(),
        );
    }
    Ok(Json(Show {
        modelfile: "",
        parameters: "",
        template: template.unwrap_or_default(),
        details: details(&entry),
        model_info,
        capabilities,
        modified_at: modified(&entry),
    }))
}

/// An `/api/ps` entry: a loaded model.
#[derive(Serialize, ToSchema)]
struct Running {
    name: String,
    model: String,
    size: u64,
    digest: String,
    details: Details,
    expires_at: String,
    size_vram: u64,
}

/// When a loaded model will be unloaded, as a wall-clock time (one kept for good, far ahead,
/// as Ollama shows it).
pub fn expires_at(entry: &ModelEntry, server: KeepAlive) -> String {
    let left = entry
        .expires_in(server)
        .unwrap_or(std::time::Duration::from_secs(100 * 365 * 24 * 3600));
    let at = chrono::Utc::now() + chrono::Duration::from_std(left).unwrap_or_default();
    at.to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
}

/// The loaded models.
#[utoipa::path(get, path = "/api/ps", tag = "ollama",
    responses((status = 200, description = "The loaded models", body = Models<Running>)))]
async fn ps(State(state): State<AppState>) -> Json<Models<Running>> {
    let models = state
        .turns
        .registry
        .all()
        .into_iter()
        .filter_map(|m| {
            let engine = m.loaded()?;
            Some(Running {
                name: m.id().into(),
                model: m.id().into(),
                size: m.memory().max(engine.info().file_bytes),
                digest: digest(&m),
                details: details(&m),
                expires_at: expires_at(&m, state.turns.registry.residency.keep_alive),
                size_vram: 0,
            })
        })
        .collect();
    Json(Models { models })
}

#[derive(Serialize, ToSchema)]
struct Version {
    version: &'static str,
}

#[utoipa::path(get, path = "/api/version", tag = "ollama",
    responses((status = 200, description = "This server's version", body = Version)))]
async fn version() -> Json<Version> {
    Json(Version {
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Ollama's `format`: `"json"` for any JSON object, or a JSON Schema.
fn json_output(format: Option<&Value>) -> Option<JsonOutput> {
    match format? {
        Value::Object(_) => format.cloned().map(JsonOutput::Schema),
        Value::Null => None,
        _ => Some(JsonOutput::Object),
    }
}
