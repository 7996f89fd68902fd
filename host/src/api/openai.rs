//! OpenAI's API: `/v1/chat/completions` (streamed as SSE chunks exactly in OpenAI's shape),
//! `/v1/completions` and `/v1/models`.
//!
//! Long because OpenAI's shapes are many (requests, whole answers, stream chunks, logprobs,
//! usage, models), each described for `/openapi.json`; each handler is a short translation to
//! [`crate::turn`].

use std::convert::Infallible;
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::stream::{self, Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, OpenAiErrorBody};
use super::{ApiJson, ApiPath, AppState, unix_now};
use crate::adapter::Problem;
use crate::chat::ChatRequest;
use crate::engine::{GeneratedToken, StopCause};
use crate::registry::{ModelEntry, Source};
use crate::toolcalls::ToolPolicy;
use crate::turn::{
    Attempt, ChatEvent, ChatParams, ChatStream, CompleteParams, JsonOutput, PromptInput,
    SamplingOverrides, Summary,
};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(chat_completions))
        .routes(routes!(completions))
        .routes(routes!(list_models))
        .routes(routes!(get_model))
}

/// A string or a list of strings (`stop`).
#[derive(Deserialize, ToSchema)]
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

#[derive(Deserialize, Default, ToSchema)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

/// Sampling fields shared by chat and completions (`top_k`, `min_p` and
/// `repetition_penalty` are extensions most OpenAI-compatible servers accept).
#[derive(Deserialize, Default, ToSchema)]
struct Sampling {
    // Read as f64: a value such as 1e-300 is valid here but 0 as an f32.
    #[schema(minimum = 0, maximum = 2)]
    temperature: Option<f64>,
    #[schema(exclusive_minimum = 0, maximum = 1)]
    top_p: Option<f64>,
    top_k: Option<usize>,
    #[schema(minimum = 0, maximum = 1)]
    min_p: Option<f64>,
    seed: Option<i64>,
    #[schema(minimum = -2, maximum = 2)]
    presence_penalty: Option<f64>,
    #[schema(minimum = -2, maximum = 2)]
    frequency_penalty: Option<f64>,
    #[schema(exclusive_minimum = 0)]
    repetition_penalty: Option<f64>,
    /// At most the server's `--max-tokens-limit`, when it has one.
    #[schema(minimum = 1)]
    max_tokens: Option<usize>,
    #[schema(minimum = 1)]
    max_completion_tokens: Option<usize>,
    stop: Option<OneOrMany>,
    /// Only 1.
    #[schema(minimum = 1, maximum = 1)]
    n: Option<usize>,
}

impl Sampling {
    /// The tokens asked for: `max_completion_tokens`, OpenAI's newer name, else `max_tokens`.
    fn max_tokens(&self) -> Option<usize> {
        self.max_completion_tokens.or(self.max_tokens)
    }

    fn check(&self, limits: &crate::limits::Limits) -> Result<(), ApiError> {
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
        if let Some(p) = self.min_p
            && !(0.0..=1.0).contains(&p)
        {
            return Err(ApiError::bad_request(
                format!("min_p must be between 0 and 1, not {p}"),
                Some("min_p"),
            ));
        }
        if let Some(r) = self.repetition_penalty
            && r.partial_cmp(&0.0) != Some(std::cmp::Ordering::Greater)
        {
            return Err(ApiError::bad_request(
                format!("repetition_penalty must be above 0, not {r}"),
                Some("repetition_penalty"),
            ));
        }
        if self.n.is_some_and(|n| n != 1) {
            return Err(ApiError::bad_request("only n = 1 is supported", Some("n")));
        }
        for (name, value) in [
            ("max_tokens", self.max_tokens),
            ("max_completion_tokens", self.max_completion_tokens),
        ] {
            if value == Some(0) {
                return Err(ApiError::bad_request(
                    format!("{name} must be at least 1"),
                    Some(name),
                ));
            }
            // Both, though only one is used: each is bounded (and described so).
            limits
                .check_max_tokens(value)
                .map_err(|e| ApiError::from(crate::turn::TurnError::Limit(e)))?;
        }
        Ok(())
    }

    fn overrides(&self) -> SamplingOverrides {
        let f32_of = |v: Option<f64>| v.map(|v| v as f32);
        // Positive however small: 1e-300 is a valid top_p, and 0 would mean another thing.
        let positive = |v: Option<f64>| v.map(|v| (v as f32).max(f32::MIN_POSITIVE));
        SamplingOverrides {
            temperature: f32_of(self.temperature),
            top_p: positive(self.top_p),
            top_k: self.top_k,
            min_p: f32_of(self.min_p),
            seed: self.seed.map(|s| s as u64),
            presence_penalty: f32_of(self.presence_penalty),
            frequency_penalty: f32_of(self.frequency_penalty),
            repetition_penalty: positive(self.repetition_penalty),
        }
    }
}

#[derive(Deserialize, ToSchema)]
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
    #[schema(maximum = 20)]
    top_logprobs: Option<usize>,
    #[schema(value_type = Option<ResponseFormatSchema>)]
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

/// `response_format`, as the API description shows it (read by [`json_output`]).
#[derive(ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
#[allow(dead_code)]
enum ResponseFormatSchema {
    Text,
    /// Any JSON object.
    JsonObject,
    /// JSON that a schema accepts.
    JsonSchema {
        json_schema: JsonSchemaFormat,
    },
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct JsonSchemaFormat {
    name: Option<String>,
    strict: Option<bool>,
    #[schema(value_type = Object)]
    schema: Value,
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

/// `usage`, in chat and text completions.
#[derive(Serialize, ToSchema)]
struct Usage {
    prompt_tokens: usize,
    completion_tokens: usize,
    total_tokens: usize,
    prompt_tokens_details: PromptTokensDetails,
}

#[derive(Serialize, ToSchema)]
struct PromptTokensDetails {
    cached_tokens: usize,
}

impl Usage {
    fn of(summary: &Summary) -> Usage {
        let u = &summary.usage;
        Usage {
            prompt_tokens: u.prompt_tokens,
            completion_tokens: u.completion_tokens,
            total_tokens: u.prompt_tokens + u.completion_tokens,
            prompt_tokens_details: PromptTokensDetails {
                cached_tokens: u.cached_tokens,
            },
        }
    }
}

/// Speeds as llama.cpp's server reports them (`timings`), so that the UIs that read them
/// (Open WebUI and others) show plugboard's: prompt tokens evaluated (the cached ones not
/// counted) and generated, their milliseconds and rates.
#[derive(Serialize, ToSchema)]
struct LlamaTimings {
    prompt_n: usize,
    prompt_ms: f64,
    prompt_per_second: f64,
    predicted_n: usize,
    predicted_ms: f64,
    predicted_per_second: f64,
    cache_n: usize,
}

impl LlamaTimings {
    fn of(summary: &Summary) -> LlamaTimings {
        let u = &summary.usage;
        let rate = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
        let prompt_n = u.prompt_tokens.saturating_sub(u.cached_tokens);
        LlamaTimings {
            prompt_n,
            prompt_ms: u.prefill_ms,
            prompt_per_second: rate(prompt_n, u.prefill_ms),
            predicted_n: u.completion_tokens,
            predicted_ms: u.decode_ms,
            predicted_per_second: rate(u.completion_tokens, u.decode_ms),
            cache_n: u.cached_tokens,
        }
    }
}

/// A chat `logprobs` entry: a token and its most likely alternatives.
#[derive(Serialize, ToSchema)]
struct TokenLogprob<'a> {
    #[serde(flatten)]
    chosen: Logprob<'a>,
    top_logprobs: Vec<Logprob<'a>>,
}

/// Log-probabilities are written widened to f64: a client that reads doubles gets the f32
/// exactly, not its shortest decimal.
#[derive(Serialize, ToSchema)]
struct Logprob<'a> {
    token: &'a str,
    logprob: f64,
    bytes: &'a [u8],
}

impl<'a> Logprob<'a> {
    fn of(token: &'a str, logprob: f32) -> Logprob<'a> {
        Logprob {
            token,
            logprob: logprob.into(),
            bytes: token.as_bytes(),
        }
    }
}

#[derive(Serialize, ToSchema)]
struct ChatLogprobs<'a> {
    content: Vec<TokenLogprob<'a>>,
}

/// A chat choice's `logprobs`: null unless they were asked for.
fn chat_logprobs(tokens: &[GeneratedToken]) -> Option<ChatLogprobs<'_>> {
    (!tokens.is_empty()).then(|| ChatLogprobs {
        content: tokens
            .iter()
            .map(|t| TokenLogprob {
                chosen: Logprob::of(&t.text, t.logprob),
                top_logprobs: t
                    .top
                    .iter()
                    .map(|(text, lp)| Logprob::of(text, *lp))
                    .collect(),
            })
            .collect(),
    })
}

/// plugboard's own additions to a response: who served it, problems with tool calls, and
/// timings.
#[derive(Serialize, ToSchema)]
struct Plugboard<'a> {
    adapter: &'a str,
    problems: &'a [Problem],
    attempts: Vec<Attempt>,
    timings: Timings,
}

#[derive(Serialize, ToSchema)]
struct Timings {
    queue_ms: f64,
    prefill_ms: f64,
    decode_ms: f64,
}

impl<'a> Plugboard<'a> {
    fn of(summary: &'a Summary, adapter: &'a str, attempts: Vec<Attempt>) -> Plugboard<'a> {
        Plugboard {
            adapter,
            problems: &summary.problems,
            attempts,
            timings: Timings {
                queue_ms: summary.usage.queue_ms,
                prefill_ms: summary.usage.prefill_ms,
                decode_ms: summary.usage.decode_ms,
            },
        }
    }
}

/// A chat completion, answered whole.
#[derive(Serialize, ToSchema)]
struct ChatCompletion<'a> {
    id: String,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: Option<&'static str>,
    choices: Vec<ChatChoice<'a>>,
    usage: Usage,
    timings: LlamaTimings,
    plugboard: Plugboard<'a>,
}

#[derive(Serialize, ToSchema)]
struct ChatChoice<'a> {
    index: u32,
    message: ChatMessage,
    logprobs: Option<ChatLogprobs<'a>>,
    finish_reason: &'static str,
}

#[derive(Serialize, ToSchema)]
struct ChatMessage {
    role: &'static str,
    /// Null when there is no text (a turn that only calls tools), as OpenAI answers.
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<ToolCall>>,
}

#[derive(Serialize, ToSchema)]
struct ToolCall {
    id: String,
    #[serde(rename = "type")]
    kind: &'static str,
    function: Function,
}

#[derive(Serialize, ToSchema)]
struct Function {
    name: String,
    arguments: String,
}

/// One SSE chunk of a streamed chat completion; the usage chunk has no choices.
#[derive(Serialize)]
struct ChatChunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    system_fingerprint: Option<&'static str>,
    choices: Vec<ChunkChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    /// On the last chunk, as llama.cpp's server sends it.
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<LlamaTimings>,
    #[serde(skip_serializing_if = "Option::is_none")]
    plugboard: Option<Plugboard<'a>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta,
    logprobs: Option<ChatLogprobs<'a>>,
    finish_reason: Option<&'static str>,
}

/// What a chunk adds to the message; what it does not add is left out.
#[derive(Serialize, Default)]
struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<Vec<DeltaCall>>,
}

/// A streamed call: its first chunk names it (`id`, `type`, `name`), the next carries its
/// arguments.
#[derive(Serialize)]
struct DeltaCall {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: DeltaFunction,
}

#[derive(Serialize)]
struct DeltaFunction {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    arguments: String,
}

/// A text completion, whole or one streamed chunk (the usage chunk has no choices).
#[derive(Serialize, ToSchema)]
struct TextCompletion<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<TextChoice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Usage>,
    #[serde(skip_serializing_if = "Option::is_none")]
    timings: Option<LlamaTimings>,
}

#[derive(Serialize, ToSchema)]
struct TextChoice<'a> {
    index: u32,
    text: String,
    logprobs: Option<TextLogprobs<'a>>,
    finish_reason: Option<&'static str>,
    stop_reason: Option<StopReason<'a>>,
}

/// A text completion's `logprobs`: parallel lists, each token's alternatives as
/// `{text: logprob}`.
#[derive(Serialize, ToSchema)]
struct TextLogprobs<'a> {
    tokens: Vec<&'a str>,
    token_logprobs: Vec<f64>,
    top_logprobs: Vec<Map<String, Value>>,
}

/// A text completion's `logprobs`: null unless they were asked for.
fn text_logprobs(tokens: &[GeneratedToken]) -> Option<TextLogprobs<'_>> {
    (!tokens.is_empty()).then(|| TextLogprobs {
        tokens: tokens.iter().map(|t| t.text.as_str()).collect(),
        token_logprobs: tokens.iter().map(|t| t.logprob.into()).collect(),
        top_logprobs: tokens
            .iter()
            .map(|t| {
                t.top
                    .iter()
                    .map(|(text, lp)| (text.clone(), f64::from(*lp).into()))
                    .collect()
            })
            .collect(),
    })
}

/// vLLM's `stop_reason`: the stop string or token id that ended the output.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
enum StopReason<'a> {
    Text(&'a str),
    Token(u32),
}

fn stop_reason(summary: &Summary) -> Option<StopReason<'_>> {
    match summary.stop.as_ref()? {
        StopCause::Text(text) => Some(StopReason::Text(text)),
        StopCause::Token(id) => Some(StopReason::Token(*id)),
    }
}

/// An SSE event with this JSON.
fn data(body: &impl Serialize) -> Event {
    Event::default()
        .json_data(body)
        .expect("response bodies serialize")
}

/// What every chunk of one completion repeats.
struct Head {
    id: String,
    created: u64,
    model: String,
}

impl Head {
    fn new(prefix: &str, model: String) -> Arc<Head> {
        Arc::new(Head {
            id: completion_id(prefix),
            created: unix_now(),
            model,
        })
    }

    fn chat_chunk<'a>(
        &'a self,
        delta: Delta,
        logprobs: Option<ChatLogprobs<'a>>,
        finish_reason: Option<&'static str>,
    ) -> ChatChunk<'a> {
        ChatChunk {
            choices: vec![ChunkChoice {
                index: 0,
                delta,
                logprobs,
                finish_reason,
            }],
            ..self.chat_usage_chunk(None)
        }
    }

    /// A chat chunk without choices: the one with `usage`, and what the others start from.
    fn chat_usage_chunk(&self, usage: Option<Usage>) -> ChatChunk<'_> {
        ChatChunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.created,
            model: &self.model,
            system_fingerprint: None,
            choices: vec![],
            usage,
            timings: None,
            plugboard: None,
        }
    }

    /// A text completion, or one of its chunks.
    fn text<'a>(
        &'a self,
        choices: Vec<TextChoice<'a>>,
        usage: Option<Usage>,
    ) -> TextCompletion<'a> {
        TextCompletion {
            id: &self.id,
            object: "text_completion",
            created: self.created,
            model: &self.model,
            choices,
            usage,
            timings: None,
        }
    }
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

/// A chat completion: whole, or streamed as server-sent events (`stream: true`). Tool calls are
/// parsed, validated against the tools' schemas and, unless `constrained` is false, constrained
/// to them while generated.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    params(("x-plugboard-escalate" = Option<String>, Header, description = "`1`: start with the request's first fallback")),
    request_body = ChatCompletionRequest,
    responses(
        (status = 200, description = "The completion, or its chunks", content(
            (ChatCompletion = "application/json"),
            (super::openapi::ServerSentEvent = "text/event-stream"))),
        (status = 400, description = "An invalid request (the field is in `param`), or one longer than the model's context (`context_length_exceeded`)", body = OpenAiErrorBody),
        (status = 404, description = "No such model, or its file is not downloaded", body = OpenAiErrorBody),
        (status = 422, description = "The model's tool call failed validation (`tool_choice` required one)", body = OpenAiErrorBody),
        (status = 500, description = "The model or its adapter failed", body = OpenAiErrorBody),
        (status = 502, description = "A remote backend failed", body = OpenAiErrorBody),
        (status = 503, description = "The model's queue is full, or its backend is overloaded", body = OpenAiErrorBody),
        (status = 507, description = "The model does not fit in memory", body = OpenAiErrorBody),
    ))]
async fn chat_completions(
    State(state): State<AppState>,
    headers: HeaderMap,
    ApiJson(request): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    request.sampling.check(&state.turns.limits)?;
    let params = ChatParams {
        model: request.model.clone(),
        json: json_output(request.response_format.as_ref())?,
        constrained: request.constrained.unwrap_or(true),
        logprobs: logprobs_arg(request.logprobs, request.top_logprobs)?,
        max_tokens: request.sampling.max_tokens(),
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
        keep_alive: None,
    };
    if request.stream && state.turns.holds(&params) {
        // A bad request is a 400 before the held response starts, as it is otherwise.
        state.turns.validate(&params)?;
        // The turn is held until judged (a fallback may serve it instead): the response
        // starts now and SSE comments keep the connection alive meanwhile. Who serves it is
        // known only then — each chunk's `model`, the last one's `plugboard.attempts` — so
        // this response has no `x-plugboard-*` headers.
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let turns = state.turns.clone();
        let events =
            stream::once(async move { turns.chat(params).await }).flat_map(move |result| {
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
    let stream = state.turns.chat(params).await?;
    let served = Served::of(&stream);
    let response = if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        Sse::new(chat_chunks(stream, include_usage))
            .keep_alive(KeepAlive::default())
            .into_response()
    } else {
        chat_response(stream).await?
    };
    Ok(served.headers(response))
}

async fn chat_response(mut stream: ChatStream) -> Result<Response, ApiError> {
    let turn = stream
        .collect()
        .await
        .map_err(|e| ApiError::from(e.as_ref()))?;
    let message = ChatMessage {
        role: "assistant",
        content: Some(turn.content).filter(|c| !c.is_empty()),
        reasoning_content: Some(turn.reasoning).filter(|r| !r.is_empty()),
        tool_calls: (!turn.calls.is_empty()).then(|| {
            turn.calls
                .into_iter()
                .map(|call| ToolCall {
                    id: call.id,
                    kind: "function",
                    function: Function {
                        name: call.name,
                        arguments: call.arguments,
                    },
                })
                .collect()
        }),
    };
    Ok(Json(ChatCompletion {
        id: completion_id("chatcmpl"),
        object: "chat.completion",
        created: unix_now(),
        model: &stream.model,
        system_fingerprint: None,
        choices: vec![ChatChoice {
            index: 0,
            message,
            logprobs: chat_logprobs(&turn.tokens),
            finish_reason: turn.summary.finish.as_str(),
        }],
        usage: Usage::of(&turn.summary),
        timings: LlamaTimings::of(&turn.summary),
        plugboard: Plugboard::of(&turn.summary, &stream.adapter, stream.attempts_now()),
    })
    .into_response())
}

/// The SSE events of a chat turn: a role chunk, content / reasoning / tool-call chunks, a
/// finish chunk, an optional usage chunk, then `[DONE]`.
fn chat_chunks(
    stream: ChatStream,
    include_usage: bool,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let attempts = stream.attempts.clone();
    let served_at = stream.started;
    let ChatStream {
        events,
        model,
        adapter,
        ..
    } = stream;
    let head = Head::new("chatcmpl", model);
    let first = data(&head.chat_chunk(
        Delta {
            role: Some("assistant"),
            content: Some(String::new()),
            ..Delta::default()
        },
        None,
        None,
    ));
    let rest = stream::unfold((events, false), move |(mut events, done)| {
        let head = head.clone();
        let adapter = adapter.clone();
        let attempts = attempts.clone();
        async move {
            if done {
                return None;
            }
            let Some(event) = events.recv().await else {
                return Some((vec![Event::default().data("[DONE]")], (events, true)));
            };
            let chunk = |delta: Delta| data(&head.chat_chunk(delta, None, None));
            let out: Vec<Event> = match event {
                ChatEvent::Content { text, tokens } => vec![data(&head.chat_chunk(
                    Delta {
                        content: Some(text),
                        ..Delta::default()
                    },
                    chat_logprobs(&tokens),
                    None,
                ))],
                ChatEvent::Reasoning(text) => vec![chunk(Delta {
                    reasoning_content: Some(text),
                    ..Delta::default()
                })],
                ChatEvent::ToolCall(call) => vec![
                    chunk(Delta {
                        tool_calls: Some(vec![DeltaCall {
                            index: call.index,
                            id: Some(call.id),
                            kind: Some("function"),
                            function: DeltaFunction {
                                name: Some(call.name),
                                arguments: String::new(),
                            },
                        }]),
                        ..Delta::default()
                    }),
                    chunk(Delta {
                        tool_calls: Some(vec![DeltaCall {
                            index: call.index,
                            id: None,
                            kind: None,
                            function: DeltaFunction {
                                name: None,
                                arguments: call.arguments,
                            },
                        }]),
                        ..Delta::default()
                    }),
                ],
                ChatEvent::Error(e) => {
                    let error = ApiError::from(e.as_ref());
                    return Some((
                        vec![data(&error.openai_body()), Event::default().data("[DONE]")],
                        (events, true),
                    ));
                }
                ChatEvent::Done(summary) => {
                    let attempts = crate::turn::attempts_until_now(&attempts, served_at);
                    let mut out = vec![data(&ChatChunk {
                        timings: Some(LlamaTimings::of(&summary)),
                        plugboard: Some(Plugboard::of(&summary, &adapter, attempts)),
                        ..head.chat_chunk(Delta::default(), None, Some(summary.finish.as_str()))
                    })];
                    if include_usage {
                        out.push(data(&head.chat_usage_chunk(Some(Usage::of(&summary)))));
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

/// A prompt: text, or token ids; a list of either holds one prompt only (see
/// [`completion_prompt_schema`]).
#[derive(Deserialize)]
#[serde(untagged)]
enum CompletionPrompt {
    Text(String),
    Texts(Vec<String>),
    Tokens(Vec<u32>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize, ToSchema)]
struct CompletionRequest {
    model: String,
    #[schema(schema_with = completion_prompt_schema)]
    prompt: CompletionPrompt,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    #[serde(flatten)]
    sampling: Sampling,
    #[schema(maximum = 20)]
    logprobs: Option<usize>,
    /// Not supported: only `false`.
    #[serde(default)]
    #[schema(schema_with = only_false)]
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

/// `prompt` as the description shows it: text, token ids, or a list of one of either (`[]`
/// is none of them: a list of no texts).
fn completion_prompt_schema() -> utoipa::openapi::schema::Schema {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, OneOfBuilder, Schema, Type};
    let text = || ObjectBuilder::new().schema_type(Type::String);
    let ids = || {
        ArrayBuilder::new()
            .items(
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .minimum(Some(0))
                    .maximum(Some(u32::MAX)),
            )
            .min_items(Some(1))
    };
    let one = |items: utoipa::openapi::RefOr<Schema>| {
        ArrayBuilder::new()
            .items(items)
            .min_items(Some(1))
            .max_items(Some(1))
    };
    Schema::OneOf(
        OneOfBuilder::new()
            .item(text())
            .item(one(text().into()))
            .item(ids())
            .item(one(ids().into()))
            .description(Some("Text or token ids; a list holds one prompt only"))
            .build(),
    )
}

/// A boolean that may only be false: a feature the API has and this server does not offer.
fn only_false() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::Boolean)
        .enum_values(Some([false]))
        .build()
}

/// A text completion from a prompt as it is (text or token ids), without the chat template.
#[utoipa::path(post, path = "/v1/completions", tag = "openai",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "The completion, or its chunks", content(
            (TextCompletion = "application/json"),
            (super::openapi::ServerSentEvent = "text/event-stream"))),
        (status = 400, description = "An invalid request (the field is in `param`), or one longer than the model's context", body = OpenAiErrorBody),
        (status = 404, description = "No such model, or its file is not downloaded", body = OpenAiErrorBody),
        (status = 500, description = "The model failed", body = OpenAiErrorBody),
        (status = 502, description = "A remote backend failed", body = OpenAiErrorBody),
        (status = 503, description = "The model's queue is full, or its backend is overloaded", body = OpenAiErrorBody),
        (status = 507, description = "The model does not fit in memory", body = OpenAiErrorBody),
    ))]
async fn completions(
    State(state): State<AppState>,
    ApiJson(request): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    request.sampling.check(&state.turns.limits)?;
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
            .max_tokens()
            // OpenAI's default, within this server's ceiling.
            .or(Some(
                state
                    .turns
                    .limits
                    .max_tokens
                    .map_or(16, |most| most.min(16)),
            )),
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
        keep_alive: None,
    };
    let mut stream = state.turns.complete(params).await?;
    let served = Served::of(&stream);
    let head = Head::new("cmpl", stream.model.clone());
    if request.stream {
        let include_usage = request.stream_options.is_some_and(|o| o.include_usage);
        let events = stream::unfold((stream.events, false), move |(mut events, done)| {
            let head = head.clone();
            async move {
                if done {
                    return None;
                }
                let out = match events.recv().await {
                    Some(ChatEvent::Content { text, .. }) => vec![data(&head.text(
                        vec![TextChoice {
                            index: 0,
                            text,
                            logprobs: None,
                            finish_reason: None,
                            stop_reason: None,
                        }],
                        None,
                    ))],
                    Some(ChatEvent::Done(summary)) => {
                        let mut out = vec![data(&TextCompletion {
                            timings: Some(LlamaTimings::of(&summary)),
                            ..head.text(
                                vec![TextChoice {
                                    index: 0,
                                    text: String::new(),
                                    logprobs: None,
                                    finish_reason: Some(summary.finish.as_str()),
                                    stop_reason: stop_reason(&summary),
                                }],
                                None,
                            )
                        })];
                        if include_usage {
                            out.push(data(&head.text(vec![], Some(Usage::of(&summary)))));
                        }
                        out.push(Event::default().data("[DONE]"));
                        return Some((out, (events, true)));
                    }
                    Some(ChatEvent::Error(e)) => {
                        let body = ApiError::from(e.as_ref()).openai_body();
                        return Some((
                            vec![data(&body), Event::default().data("[DONE]")],
                            (events, true),
                        ));
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
    let turn = stream
        .collect()
        .await
        .map_err(|e| ApiError::from(e.as_ref()))?;
    let completion = TextCompletion {
        timings: Some(LlamaTimings::of(&turn.summary)),
        ..head.text(
            vec![TextChoice {
                index: 0,
                text: turn.content,
                logprobs: text_logprobs(&turn.tokens),
                finish_reason: Some(turn.summary.finish.as_str()),
                stop_reason: stop_reason(&turn.summary),
            }],
            Some(Usage::of(&turn.summary)),
        )
    };
    Ok(served.headers(Json(completion).into_response()))
}

/// A `/v1/models` entry.
#[derive(Serialize, ToSchema)]
struct ModelObject<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    owned_by: &'static str,
    plugboard: ModelDetails<'a>,
}

/// plugboard's own account of a model: where it comes from, who serves it, whether it can
/// serve now and how its calls are read.
#[derive(Serialize, ToSchema)]
struct ModelDetails<'a> {
    description: Option<&'a str>,
    source: &'a Source,
    /// `local`, or the backend that serves the model.
    backend: &'a str,
    /// A remote model's name at its backend.
    backend_model: Option<&'a str>,
    /// A remote model's mode: `raw` (plugboard's adapter renders and parses) or `chat`.
    mode: Option<&'static str>,
    available: bool,
    loaded: bool,
    /// `remote`, `running`, `idle`, `available` or `not_downloaded`.
    state: &'static str,
    /// When a loaded model will be unloaded (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_at: Option<String>,
    /// The weights file's size, when it is here.
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u64>,
    /// A loaded model's estimated memory (weights and KV cache), under `--memory-budget`.
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<u64>,
    context_length: Option<usize>,
    architecture: Option<String>,
    adapter: Option<String>,
    adapter_version: Option<String>,
    capabilities: ModelCapabilities,
    lenient: bool,
    tool_policy: ToolPolicy,
}

#[derive(Serialize, ToSchema)]
struct ModelCapabilities {
    tools: bool,
    parallel_tool_calls: bool,
    reasoning: bool,
}

#[derive(Serialize, ToSchema)]
struct ModelList<'a> {
    object: &'static str,
    data: Vec<ModelObject<'a>>,
}

fn model_object<'a>(state: &AppState, entry: &'a ModelEntry) -> ModelObject<'a> {
    let engine = entry.loaded();
    let adapter_name = entry.decl.adapter.clone().or_else(|| {
        engine
            .as_ref()
            .map(|e| crate::registry::adapter_for(e.info().chat_template.as_deref()).to_string())
    });
    let adapter = adapter_name
        .as_deref()
        .and_then(|n| state.turns.plugins.get(n));
    let capabilities = adapter
        .as_ref()
        .map(|p| p.info().capabilities)
        .unwrap_or_default();
    ModelObject {
        id: entry.id(),
        object: "model",
        created: 0,
        owned_by: "plugboard",
        plugboard: ModelDetails {
            description: entry.decl.description.as_deref(),
            source: &entry.decl.source,
            backend: entry.remote.as_ref().map_or("local", |r| r.backend.name()),
            backend_model: entry.remote.as_ref().map(|r| r.model.as_str()),
            mode: entry.remote.as_ref().map(|r| r.mode.as_str()),
            available: entry.available(),
            loaded: engine.is_some(),
            state: entry.state(),
            expires_at: engine.as_ref().map(|_| {
                super::ollama::expires_at(entry, state.turns.registry.residency.keep_alive)
            }),
            size: entry
                .path()
                .and_then(|p| std::fs::metadata(p).ok())
                .map(|m| m.len()),
            memory: Some(entry.memory()).filter(|m| *m > 0),
            context_length: engine
                .as_ref()
                .map(|e| e.info().max_context)
                .or(entry.decl.context_length),
            architecture: engine.as_ref().map(|e| e.info().architecture.clone()),
            adapter: adapter_name,
            adapter_version: adapter.as_ref().map(|p| p.info().version.clone()),
            capabilities: ModelCapabilities {
                tools: capabilities.tools,
                parallel_tool_calls: capabilities.parallel_calls,
                reasoning: capabilities.reasoning,
            },
            lenient: entry.lenient(),
            tool_policy: entry.tool_policy(),
        },
    }
}

/// The models this server can serve: local files, downloadable ones and remote ones.
#[utoipa::path(get, path = "/v1/models", tag = "openai",
    responses((status = 200, description = "The models", body = ModelList)))]
async fn list_models(State(state): State<AppState>) -> Response {
    let models = state.turns.registry.all();
    let data = models.iter().map(|m| model_object(&state, m)).collect();
    Json(ModelList {
        object: "list",
        data,
    })
    .into_response()
}

/// One model.
#[utoipa::path(get, path = "/v1/models/{*id}", tag = "openai",
    params(("id" = String, Path, description = "The model's id (it may hold slashes: `Qwen/Qwen2.5-0.5B-Instruct-GGUF`)")),
    responses(
        (status = 200, description = "The model", body = ModelObject),
        (status = 404, description = "No such model", body = OpenAiErrorBody),
    ))]
async fn get_model(
    State(state): State<AppState>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let entry = state
        .turns
        .registry
        .get(&id)
        .map_err(|e| ApiError::from(crate::turn::TurnError::Registry(e)))?;
    Ok(Json(model_object(&state, &entry)).into_response())
}
