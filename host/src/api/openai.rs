//! OpenAI's API: `/v1/chat/completions` (streamed as SSE chunks exactly in OpenAI's shape),
//! `/v1/completions` and `/v1/models`.

use std::convert::Infallible;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as HttpRouter};
use futures::stream::{self, Stream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiJson, AppState, unix_now};
use crate::chat::ChatRequest;
use crate::engine::GeneratedToken;
use crate::engine::StopCause;
use crate::router::{
    Attempt, ChatEvent, ChatParams, ChatStream, CompleteParams, JsonOutput, PromptInput,
    SamplingOverrides, Summary,
};

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*id}", get(get_model))
}

/// A string or a list of strings (`stop`).
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

#[derive(Deserialize, Default)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Sampling fields shared by chat and completions (`top_k`, `min_p` and
/// `repetition_penalty` are extensions most OpenAI-compatible servers accept).
#[derive(Deserialize, Default)]
struct Sampling {
    temperature: Option<f32>,
    top_p: Option<f32>,
    top_k: Option<usize>,
    min_p: Option<f32>,
    seed: Option<i64>,
    presence_penalty: Option<f32>,
    frequency_penalty: Option<f32>,
    repetition_penalty: Option<f32>,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    stop: Option<OneOrMany>,
    n: Option<usize>,
}

impl Sampling {
    fn check(&self) -> Result<(), ApiError> {
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(ApiError::bad_request(
                format!("temperature must be between 0 and 2, not {t}"),
                Some("temperature"),
            ));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(ApiError::bad_request(
                format!("top_p must be in (0, 1], not {p}"),
                Some("top_p"),
            ));
        }
        for (name, value) in [
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ] {
            if let Some(v) = value
                && !(-2.0..=2.0).contains(&v)
            {
                return Err(ApiError::bad_request(
                    format!("{name} must be between -2 and 2, not {v}"),
                    Some(name),
                ));
            }
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request("only n = 1 is supported", Some("n")));
        }
        if self.max_tokens.or(self.max_completion_tokens) == Some(0) {
            return Err(ApiError::bad_request(
                "max_tokens must be at least 1",
                Some("max_tokens"),
            ));
        }
        Ok(())
    }

    fn overrides(&self) -> SamplingOverrides {
        SamplingOverrides {
            temperature: self.temperature,
            top_p: self.top_p,
            top_k: self.top_k,
            min_p: self.min_p,
            seed: self.seed.map(|s| s as u64),
            presence_penalty: self.presence_penalty,
            frequency_penalty: self.frequency_penalty,
            repetition_penalty: self.repetition_penalty,
        }
    }
}

#[derive(Deserialize)]
struct ChatCompletionRequest {
    model: String,
    #[serde(flatten)]
    chat: ChatRequest,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    sampling: Sampling,
    #[serde(default)]
    logprobs: bool,
    top_logprobs: Option<usize>,
    response_format: Option<Value>,
    /// plugboard's own: `false` turns constrained decoding off for this request.
    constrained: Option<bool>,
    /// Models to fall back to, replacing the configured ones (as LiteLLM's proxy accepts).
    fallbacks: Option<Vec<String>>,
    #[serde(default)]
    disable_fallbacks: bool,
}

/// The header that skips a request's model and starts with its first fallback.
pub const ESCALATE_HEADER: &str = "x-plugboard-escalate";

/// Whether a request asks to escalate (`x-plugboard-escalate: 1`, `true` or `yes`).
pub fn escalates(headers: &HeaderMap) -> bool {
    headers
        .get(ESCALATE_HEADER)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes"))
}

fn json_output(format: Option<&Value>) -> Result<Option<JsonOutput>, ApiError> {
    match format.and_then(|f| f.get("type")).and_then(Value::as_str) {
        None | Some("text") => Ok(None),
        Some("json_object") => Ok(Some(JsonOutput::Object)),
        Some("json_schema") => {
            let schema = format
                .and_then(|f| f.pointer("/json_schema/schema"))
                .filter(|s| s.is_object() || s.is_boolean())
                .ok_or_else(|| {
                    ApiError::bad_request(
                        "response_format json_schema needs json_schema.schema, a JSON Schema object",
                        Some("response_format"),
                    )
                })?;
            Ok(Some(JsonOutput::Schema(schema.clone())))
        }
        Some(other) => Err(ApiError::bad_request(
            format!(
                "response_format type '{other}' is not supported (text, json_object, json_schema)"
            ),
            Some("response_format"),
        )),
    }
}

fn logprobs_arg(logprobs: bool, top: Option<usize>) -> Result<Option<usize>, ApiError> {
    if top.is_some_and(|n| n > 20) {
        return Err(ApiError::bad_request(
            "top_logprobs must be at most 20",
            Some("top_logprobs"),
        ));
    }
    Ok(logprobs.then(|| top.unwrap_or(0)))
}

fn completion_id(prefix: &str) -> String {
    use rand::Rng;
    let suffix: String = (0..24)
        .map(|_| rand::rng().sample(rand::distr::Alphanumeric) as char)
        .collect();
    format!("{prefix}-{suffix}")
}

fn usage_json(summary: &Summary) -> Value {
    let u = &summary.usage;
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": u.cached_tokens},
    })
}

fn logprob_json(tokens: &[GeneratedToken]) -> Value {
    let entry = |text: &str, logprob: f32| json!({"token": text, "logprob": logprob, "bytes": text.as_bytes()});
    Value::Array(
        tokens
            .iter()
            .map(|t| {
                let mut e = entry(&t.text, t.logprob);
                e["top_logprobs"] =
                    Value::Array(t.top.iter().map(|(text, lp)| entry(text, *lp)).collect());
                e
            })
            .collect(),
    )
}

/// plugboard's own additions to a response: who served it, problems with tool calls, and
/// timings.
fn plugboard_json(summary: &Summary, adapter: &str, attempts: &[Attempt]) -> Value {
    json!({
        "adapter": adapter,
        "problems": summary.problems,
        "attempts": attempts,
        "timings": {
            "queue_ms": summary.usage.queue_ms,
            "prefill_ms": summary.usage.prefill_ms,
            "decode_ms": summary.usage.decode_ms,
        },
    })
}

/// Who serves a response.
pub struct Served {
    model: String,
    adapter: String,
    backend: String,
    attempts: usize,
}

impl Served {
    pub fn of(stream: &ChatStream) -> Served {
        Served {
            model: stream.model.clone(),
            adapter: stream.adapter.clone(),
            backend: stream.backend.clone(),
            attempts: stream.attempts.len(),
        }
    }

    /// The response with `x-plugboard-model`, `-backend`, `-attempts` (how many models were
    /// tried) and `-adapter` (when plugboard's adapter parses).
    pub fn headers(&self, mut response: Response) -> Response {
        let headers = response.headers_mut();
        let mut put = |name: &'static str, value: &str| {
            if !value.is_empty()
                && let Ok(value) = HeaderValue::from_str(value)
            {
                headers.insert(name, value);
            }
        };
        put("x-plugboard-adapter", &self.adapter);
        put("x-plugboard-model", &self.model);
        put("x-plugboard-backend", &self.backend);
        put("x-plugboard-attempts", &self.attempts.to_string());
        response
    }
}

/// vLLM's `stop_reason`: the stop string or token id that ended the output.
fn stop_reason(summary: &Summary) -> Value {
    match &summary.stop {
        Some(StopCause::Text(text)) => json!(text),
        Some(StopCause::Token(id)) => json!(id),
        None => Value::Null,
    }
}

async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    request.sampling.check()?;
    let params = ChatParams {
        model: request.model.clone(),
        json: json_output(request.response_format.as_ref())?,
        constrained: request.constrained.unwrap_or(true),
        logprobs: logprobs_arg(request.logprobs, request.top_logprobs)?,
        max_tokens: request
            .sampling
            .max_completion_tokens
            .or(request.sampling.max_tokens),
        sampling: request.sampling.overrides(),
        stop: request
            .sampling
            .stop
            .map(OneOrMany::into_vec)
            .unwrap_or_default(),
        chat: request.chat,
        fallbacks: request.fallbacks,
        disable_fallbacks: request.disable_fallbacks,
        escalate: escalates(&headers),
    };
    if request.stream && state.router.holds(&params) {
        // The turn is held until judged (a fallback may serve it instead): the response
        // starts now and SSE comments keep the connection alive meanwhile. Who serves it is
        // known only then — each chunk's `model`, the last one's `plugboard.attempts` — so
        // this response has no `x-plugboard-*` headers.
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let router = state.router.clone();
        let events =
            stream::once(async move { router.chat(params).await }).flat_map(move |result| {
                match result {
                    Ok(turn) => chat_chunks(turn, include_usage).boxed(),
                    Err(e) => stream::iter([
                        Ok(Event::default().data(ApiError::from(&e).openai_body().to_string())),
                        Ok(Event::default().data("[DONE]")),
                    ])
                    .boxed(),
                }
            });
        return Ok(Sse::new(events)
            .keep_alive(KeepAlive::default())
            .into_response());
    }
    let stream = state.router.chat(params).await?;
    let served = Served::of(&stream);
    let response = if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        Sse::new(chat_chunks(stream, include_usage))
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        chat_response(stream).await?.into_response()
    };
    Ok(served.headers(response))
}

async fn chat_response(mut stream: ChatStream) -> Result<Json<Value>, ApiError> {
    let mut content = String::new();
    let mut reasoning = String::new();
    let mut calls = Vec::new();
    let mut tokens = Vec::new();
    while let Some(event) = stream.events.recv().await {
        match event {
            ChatEvent::Content { text, tokens: t } => {
                content.push_str(&text);
                tokens.extend(t);
            }
            ChatEvent::Reasoning(text) => reasoning.push_str(&text),
            ChatEvent::ToolCall(call) => calls.push(json!({
                "id": call.id,
                "type": "function",
                "function": {"name": call.name, "arguments": call.arguments},
            })),
            ChatEvent::Error(e) => return Err(ApiError::from(e.as_ref())),
            ChatEvent::Done(summary) => {
                let mut message = json!({
                    "role": "assistant",
                    "content": if content.is_empty() { Value::Null } else { Value::String(content) },
                });
                if !reasoning.is_empty() {
                    message["reasoning_content"] = Value::String(reasoning);
                }
                if !calls.is_empty() {
                    message["tool_calls"] = Value::Array(calls);
                }
                let logprobs = if tokens.is_empty() {
                    Value::Null
                } else {
                    json!({"content": logprob_json(&tokens)})
                };
                return Ok(Json(json!({
                    "id": completion_id("chatcmpl"),
                    "object": "chat.completion",
                    "created": unix_now(),
                    "model": stream.model,
                    "system_fingerprint": null,
                    "choices": [{
                        "index": 0,
                        "message": message,
                        "logprobs": logprobs,
                        "finish_reason": summary.finish.as_str(),
                    }],
                    "usage": usage_json(&summary),
                    "plugboard": plugboard_json(&summary, &stream.adapter, &stream.attempts_now()),
                })));
            }
        }
    }
    Err(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the generation ended without a result",
    ))
}

/// The SSE events of a chat turn: a role chunk, content / reasoning / tool-call chunks, a
/// finish chunk, an optional usage chunk, then `[DONE]`.
fn chat_chunks(
    stream: ChatStream,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let id = completion_id("chatcmpl");
    let created = unix_now();
    let attempts = stream.attempts.clone();
    let served_at = stream.started;
    let ChatStream {
        events,
        model,
        adapter,
        ..
    } = stream;
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: Value, finish: Option<&str>, logprobs: Value| {
            json!({
                "id": id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": model,
                "system_fingerprint": null,
                "choices": [{"index": 0, "delta": delta, "logprobs": logprobs, "finish_reason": finish}],
            })
        }
    };
    let data = |v: Value| Event::default().data(v.to_string());
    let first = data(chunk(
        json!({"role": "assistant", "content": ""}),
        None,
        Value::Null,
    ));
    let rest = stream::unfold((events, false), move |(mut events, done)| {
        let chunk = chunk.clone();
        let adapter = adapter.clone();
        let attempts = attempts.clone();
        let (id, model) = (id.clone(), model.clone());
        async move {
            if done {
                return None;
            }
            let Some(event) = events.recv().await else {
                return Some((vec![Event::default().data("[DONE]")], (events, true)));
            };
            let out: Vec<Event> = match event {
                ChatEvent::Content { text, tokens } => {
                    let logprobs = if tokens.is_empty() {
                        Value::Null
                    } else {
                        json!({"content": logprob_json(&tokens)})
                    };
                    vec![data(chunk(json!({"content": text}), None, logprobs))]
                }
                ChatEvent::Reasoning(text) => vec![data(chunk(
                    json!({"reasoning_content": text}),
                    None,
                    Value::Null,
                ))],
                ChatEvent::ToolCall(call) => vec![
                    data(chunk(
                        json!({"tool_calls": [{"index": call.index, "id": call.id, "type": "function",
                               "function": {"name": call.name, "arguments": ""}}]}),
                        None,
                        Value::Null,
                    )),
                    data(chunk(
                        json!({"tool_calls": [{"index": call.index, "function": {"arguments": call.arguments}}]}),
                        None,
                        Value::Null,
                    )),
                ],
                ChatEvent::Error(e) => {
                    let error = ApiError::from(e.as_ref());
                    return Some((
                        vec![data(error.openai_body()), Event::default().data("[DONE]")],
                        (events, true),
                    ));
                }
                ChatEvent::Done(summary) => {
                    let mut last = chunk(json!({}), Some(summary.finish.as_str()), Value::Null);
                    let attempts = crate::router::attempts_until_now(&attempts, served_at);
                    last["plugboard"] = plugboard_json(&summary, &adapter, &attempts);
                    let mut out = vec![data(last)];
                    if include_usage {
                        out.push(data(json!({
                            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
                            "system_fingerprint": null, "choices": [], "usage": usage_json(&summary),
                        })));
                    }
                    out.push(Event::default().data("[DONE]"));
                    return Some((out, (events, true)));
                }
            };
            Some((out, (events, false)))
        }
    });
    stream::once(async move { vec![first] })
        .chain(rest)
        .flat_map(|events| stream::iter(events.into_iter().map(Ok)))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum CompletionPrompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct CompletionRequest {
    model: String,
    prompt: CompletionPrompt,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    sampling: Sampling,
    logprobs: Option<usize>,
    #[serde(default)]
    echo: bool,
    /// vLLM's: start the prompt with the BOS token where the model wants one (default true).
    add_special_tokens: Option<bool>,
    /// vLLM's: leave control tokens out of the text (default false here: a raw completion
    /// shows what the model wrote).
    skip_special_tokens: Option<bool>,
    /// vLLM's: end the text with the stop string that ended it.
    #[serde(default)]
    include_stop_str_in_output: bool,
}

async fn completions(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    request.sampling.check()?;
    if request.echo {
        return Err(ApiError::bad_request("echo is not supported", Some("echo")));
    }
    let prompt = match request.prompt {
        CompletionPrompt::Text(t) => PromptInput::Text(t),
        CompletionPrompt::Tokens(ids) => PromptInput::Tokens(ids),
        CompletionPrompt::Texts(mut v) if v.len() == 1 => PromptInput::Text(v.remove(0)),
        CompletionPrompt::TokenLists(mut v) if v.len() == 1 => PromptInput::Tokens(v.remove(0)),
        _ => {
            return Err(ApiError::bad_request(
                "only one prompt per request is supported",
                Some("prompt"),
            ));
        }
    };
    let params = CompleteParams {
        model: request.model,
        prompt,
        max_tokens: request
            .sampling
            .max_tokens
            .or(request.sampling.max_completion_tokens)
            .or(Some(16)),
        logprobs: logprobs_arg(request.logprobs.is_some(), request.logprobs)?,
        sampling: request.sampling.overrides(),
        stop: request
            .sampling
            .stop
            .map(OneOrMany::into_vec)
            .unwrap_or_default(),
        add_special_tokens: request.add_special_tokens.unwrap_or(true),
        skip_special_tokens: request.skip_special_tokens.unwrap_or(false),
        include_stop_str_in_output: request.include_stop_str_in_output,
    };
    let mut stream = state.router.complete(params).await?;
    let served = Served::of(&stream);
    let id = completion_id("cmpl");
    let created = unix_now();
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let model = stream.model.clone();
        let events = stream::unfold((stream.events, false), move |(mut events, done)| {
            let (id, model) = (id.clone(), model.clone());
            async move {
                if done {
                    return None;
                }
                let chunk = |text: &str, finish: Option<&str>, stop_reason: Value| {
                    json!({"id": id, "object": "text_completion", "created": created, "model": model,
                           "choices": [{"index": 0, "text": text, "logprobs": null, "finish_reason": finish, "stop_reason": stop_reason}]})
                };
                let out = match events.recv().await {
                    Some(ChatEvent::Content { text, .. }) => vec![Event::default().data(chunk(&text, None, Value::Null).to_string())],
                    Some(ChatEvent::Done(summary)) => {
                        let mut out = vec![Event::default().data(chunk("", Some(summary.finish.as_str()), stop_reason(&summary)).to_string())];
                        if include_usage {
                            out.push(Event::default().data(
                                json!({"id": id, "object": "text_completion", "created": created, "model": model,
                                       "choices": [], "usage": usage_json(&summary)})
                                .to_string(),
                            ));
                        }
                        out.push(Event::default().data("[DONE]"));
                        return Some((out, (events, true)));
                    }
                    Some(ChatEvent::Error(e)) => {
                        let body = ApiError::from(e.as_ref()).openai_body().to_string();
                        return Some((vec![Event::default().data(body), Event::default().data("[DONE]")], (events, true)));
                    }
                    Some(_) => vec![],
                    None => return Some((vec![Event::default().data("[DONE]")], (events, true))),
                };
                Some((out, (events, false)))
            }
        })
        .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
        return Ok(served.headers(
            Sse::new(events)
                .keep_alive(KeepAlive::default())
                .into_response(),
        ));
    }
    let mut text = String::new();
    let mut tokens = Vec::new();
    while let Some(event) = stream.events.recv().await {
        match event {
            ChatEvent::Content {
                text: t,
                tokens: tk,
            } => {
                text.push_str(&t);
                tokens.extend(tk);
            }
            ChatEvent::Error(e) => return Err(ApiError::from(e.as_ref())),
            ChatEvent::Done(summary) => {
                let logprobs = if tokens.is_empty() {
                    Value::Null
                } else {
                    json!({
                        "tokens": tokens.iter().map(|t| t.text.clone()).collect::<Vec<_>>(),
                        "token_logprobs": tokens.iter().map(|t| t.logprob).collect::<Vec<_>>(),
                        "top_logprobs": tokens.iter().map(|t| t.top.iter().map(|(k, v)| (k.clone(), json!(v))).collect::<serde_json::Map<_, _>>()).collect::<Vec<_>>(),
                    })
                };
                return Ok(served.headers(
                    Json(json!({
                        "id": id, "object": "text_completion", "created": created, "model": stream.model,
                        "choices": [{"index": 0, "text": text, "logprobs": logprobs, "finish_reason": summary.finish.as_str(), "stop_reason": stop_reason(&summary)}],
                        "usage": usage_json(&summary),
                    }))
                    .into_response(),
                ));
            }
            _ => {}
        }
    }
    Err(ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        "the generation ended without a result",
    ))
}

fn model_json(state: &AppState, entry: &crate::registry::ModelEntry) -> Value {
    let engine = entry.loaded();
    let adapter_name = entry.decl.adapter.clone().or_else(|| {
        engine.as_ref().map(|e| {
            crate::registry::detect::adapter_for(e.info().chat_template.as_deref()).to_string()
        })
    });
    let adapter = adapter_name
        .as_deref()
        .and_then(|n| state.router.plugins.get(n));
    let capabilities = adapter
        .as_ref()
        .map(|p| p.info().capabilities)
        .unwrap_or_default();
    json!({
        "id": entry.id(),
        "object": "model",
        "created": 0,
        "owned_by": "plugboard",
        "plugboard": {
            "description": entry.decl.description,
            "source": entry.decl.source,
            "available": entry.available(),
            "loaded": engine.is_some(),
            "context_length": engine.as_ref().map(|e| e.info().max_context).or(entry.decl.context_length),
            "architecture": engine.as_ref().map(|e| e.info().architecture.clone()),
            "adapter": adapter_name,
            "adapter_version": adapter.as_ref().map(|p| p.info().version.clone()),
            "capabilities": {
                "tools": capabilities.tools,
                "parallel_tool_calls": capabilities.parallel_calls,
                "reasoning": capabilities.reasoning,
            },
            "lenient": entry.lenient(),
            "tool_policy": entry.tool_policy(),
        },
    })
}

async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let data: Vec<Value> = state
        .router
        .registry
        .all()
        .map(|m| model_json(&state, m))
        .collect();
    Json(json!({"object": "list", "data": data}))
}

async fn get_model(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let entry = state
        .router
        .registry
        .get(&id)
        .map_err(|e| ApiError::from(crate::router::RouterError::Registry(e)))?;
    Ok(Json(model_json(&state, &entry)))
}
