//! Admin and introspection: render a template, tokenize, list and exercise adapters, health
//! and Prometheus metrics.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, OpenAiErrorBody};
use super::{ApiJson, ApiPath, AppState};
use crate::adapter::ParseOptions;
use crate::chat::{ChatRequest, tools_from_json};
use crate::plugins::Entry;
use crate::turn::{RenderedPrompt, TurnError};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(apply_template))
        .routes(routes!(tokenize))
        .routes(routes!(detokenize))
        .routes(routes!(adapters))
        .routes(routes!(parse))
        .routes(routes!(events))
        .routes(routes!(health))
        .routes(routes!(metrics))
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "server_error",
        e.to_string(),
    )
}

/// The engine of the named model (or the default one), loaded off the async threads if it is
/// not loaded yet.
async fn loaded_engine(
    state: &AppState,
    model: Option<String>,
) -> Result<std::sync::Arc<crate::engine::Engine>, ApiError> {
    let model = model_name(state, model)?;
    let turns = state.turns.clone();
    let engine = tokio::task::spawn_blocking(move || {
        let entry = turns.registry.get(&model).map_err(TurnError::from)?;
        turns.registry.engine(&entry).map_err(TurnError::from)
    })
    .await
    .map_err(internal)??;
    Ok(engine)
}

/// The named model, or the default one.
fn model_name(state: &AppState, model: Option<String>) -> Result<String, ApiError> {
    model
        .or_else(|| {
            state
                .turns
                .registry
                .default_model()
                .map(|m| m.id().to_string())
        })
        .ok_or_else(|| {
            ApiError::bad_request("name a model: there is no default model", Some("model"))
        })
}

#[derive(Deserialize, ToSchema)]
struct TemplateBody {
    /// The default model when absent.
    model: Option<String>,
    #[serde(flatten)]
    chat: ChatRequest,
}

/// A chat request rendered by its model's adapter.
#[derive(Serialize, ToSchema)]
struct Rendered {
    prompt: String,
    stop: Vec<String>,
    tool_call_triggers: Vec<String>,
    reasoning_open: bool,
    /// `name/version` of the adapter that rendered it.
    adapter: String,
}

/// The prompt a chat request becomes, as the model's adapter renders it.
#[utoipa::path(post, path = "/apply-template", tag = "admin",
    request_body = TemplateBody,
    responses(
        (status = 200, description = "The prompt", body = Rendered),
        (status = 400, description = "An invalid request, or one the template refuses", body = OpenAiErrorBody),
        (status = 404, description = "No such model", body = OpenAiErrorBody),
        (status = 500, description = "The adapter failed", body = OpenAiErrorBody),
    ))]
async fn apply_template(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Json<Rendered>, ApiError> {
    let model = model_name(&state, body.model)?;
    let turns = state.turns.clone();
    let RenderedPrompt { prompt, adapter } =
        tokio::task::spawn_blocking(move || turns.render(&model, &body.chat))
            .await
            .map_err(internal)??;
    Ok(Json(Rendered {
        prompt: prompt.text,
        stop: prompt.stop,
        tool_call_triggers: prompt.tool_call_triggers,
        reasoning_open: prompt.reasoning_open,
        adapter,
    }))
}

#[derive(Deserialize, ToSchema)]
struct TokenizeBody {
    /// The default model when absent.
    model: Option<String>,
    content: String,
    /// Each id with the text it stands for.
    #[serde(default)]
    with_pieces: bool,
}

#[derive(Serialize, ToSchema)]
struct Tokens {
    #[schema(value_type = Vec<IdOrPiece>)]
    tokens: TokenList,
}

/// A token: its id, or with `with_pieces` its id and text (described item by item: an empty
/// list is either).
#[derive(ToSchema)]
#[serde(untagged)]
#[allow(dead_code)]
enum IdOrPiece {
    Id(u32),
    Piece(Piece),
}

#[derive(Serialize)]
#[serde(untagged)]
enum TokenList {
    Ids(Vec<u32>),
    Pieces(Vec<Piece>),
}

#[derive(Serialize, ToSchema)]
struct Piece {
    id: u32,
    piece: String,
}

/// The token ids of a text, by the model's tokenizer (the model is loaded if it is not).
#[utoipa::path(post, path = "/tokenize", tag = "admin",
    request_body = TokenizeBody,
    responses(
        (status = 200, description = "The ids", body = Tokens),
        (status = 400, description = "No model named and none is the default", body = OpenAiErrorBody),
        (status = 404, description = "No such model", body = OpenAiErrorBody),
        (status = 500, description = "The model could not be loaded", body = OpenAiErrorBody),
        (status = 507, description = "The model does not fit in memory", body = OpenAiErrorBody),
    ))]
async fn tokenize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenizeBody>,
) -> Result<Json<Tokens>, ApiError> {
    let engine = loaded_engine(&state, body.model).await?;
    let tokenizer = engine.tokenizer();
    let ids = tokenizer
        .encode(&body.content)
        .map_err(|e| ApiError::bad_request(e.to_string(), Some("content")))?;
    let tokens = if body.with_pieces {
        TokenList::Pieces(
            ids.iter()
                .map(|id| Piece {
                    id: *id,
                    piece: tokenizer.decode(&[*id]).unwrap_or_default(),
                })
                .collect(),
        )
    } else {
        TokenList::Ids(ids)
    };
    Ok(Json(Tokens { tokens }))
}

#[derive(Deserialize, ToSchema)]
struct DetokenizeBody {
    /// The default model when absent.
    model: Option<String>,
    tokens: Vec<u32>,
}

#[derive(Serialize, ToSchema)]
struct Detokenized {
    content: String,
}

/// The text of token ids, by the model's tokenizer.
#[utoipa::path(post, path = "/detokenize", tag = "admin",
    request_body = DetokenizeBody,
    responses(
        (status = 200, description = "The text", body = Detokenized),
        (status = 400, description = "An id outside the vocabulary, or no model named and none is the default", body = OpenAiErrorBody),
        (status = 404, description = "No such model", body = OpenAiErrorBody),
        (status = 500, description = "The model could not be loaded", body = OpenAiErrorBody),
        (status = 507, description = "The model does not fit in memory", body = OpenAiErrorBody),
    ))]
async fn detokenize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DetokenizeBody>,
) -> Result<Json<Detokenized>, ApiError> {
    let engine = loaded_engine(&state, body.model).await?;
    let vocab = engine.info().vocab_size;
    if let Some(bad) = body.tokens.iter().find(|id| **id as usize >= vocab) {
        return Err(ApiError::bad_request(
            format!("token id {bad} is outside the vocabulary of {vocab}"),
            Some("tokens"),
        )
        .code("token_out_of_vocabulary"));
    }
    let content = engine.tokenizer().decode(&body.tokens).map_err(internal)?;
    Ok(Json(Detokenized { content }))
}

#[derive(Serialize, ToSchema)]
struct AdapterList {
    /// `list`.
    object: &'static str,
    data: Vec<Entry>,
}

/// The adapters: each one's version, source, state, last error, history of swaps and faults.
#[utoipa::path(get, path = "/v1/adapters", tag = "admin",
    responses((status = 200, description = "The adapters", body = AdapterList)))]
async fn adapters(State(state): State<AppState>) -> Result<Json<AdapterList>, ApiError> {
    let plugins = state.turns.plugins.clone();
    let data = tokio::task::spawn_blocking(move || plugins.list())
        .await
        .map_err(internal)?;
    Ok(Json(AdapterList {
        object: "list",
        data,
    }))
}

#[derive(Deserialize, ToSchema)]
struct ParseBody {
    /// What a model wrote.
    text: String,
    /// The tools the calls may name (OpenAI's shape).
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::chat::ToolSchema>>)]
    tools: Option<Value>,
    #[serde(default)]
    reasoning_open: bool,
    #[serde(default)]
    lenient: bool,
}

/// What an adapter reads in a model's output: content, reasoning, tool calls and problems.
#[utoipa::path(post, path = "/v1/adapters/{name}/parse", tag = "admin",
    params(("name" = String, Path, description = "The adapter")),
    request_body = ParseBody,
    responses(
        (status = 200, description = "What the adapter read", body = Object),
        (status = 400, description = "Invalid tools, or the adapter refused the text", body = OpenAiErrorBody),
        (status = 404, description = "No such adapter", body = OpenAiErrorBody),
        (status = 500, description = "The adapter failed", body = OpenAiErrorBody),
    ))]
async fn parse(
    State(state): State<AppState>,
    ApiPath(name): ApiPath<String>,
    ApiJson(body): ApiJson<ParseBody>,
) -> Result<Response, ApiError> {
    let tools = match &body.tools {
        Some(value) => tools_from_json(value)
            .map_err(|e| ApiError::bad_request(e.message, e.param.as_deref()))?,
        None => Vec::new(),
    };
    let options = ParseOptions {
        tools,
        reasoning_open: body.reasoning_open,
        lenient: body.lenient,
    };
    let plugins = state.turns.plugins.clone();
    let result = tokio::task::spawn_blocking(move || {
        let plugin = plugins.get(&name).ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("unknown adapter '{name}'"),
            )
        })?;
        let parsed = plugin
            .parse(&body.text, &options)
            .map_err(|e| ApiError::from(TurnError::Adapter(e)))?;
        Ok::<_, ApiError>((
            parsed,
            format!("{}/{}", plugin.info().name, plugin.info().version),
        ))
    })
    .await
    .map_err(internal)?;
    let (parsed, adapter) = result?;
    let mut response = Json(parsed.to_json()).into_response();
    if let Ok(value) = adapter.parse() {
        response.headers_mut().insert("x-plugboard-adapter", value);
    }
    Ok(response)
}

#[derive(Serialize, ToSchema)]
struct Health {
    /// `ok`.
    status: &'static str,
    uptime_s: u64,
    models_loaded: Vec<LoadedModel>,
    version: &'static str,
}

#[derive(Serialize, ToSchema)]
struct LoadedModel {
    id: String,
    generated_tokens: u64,
}

/// Whether the server is up, and what it has loaded.
#[utoipa::path(get, path = "/health", tag = "admin",
    responses((status = 200, description = "Up", body = Health)))]
async fn health(State(state): State<AppState>) -> Json<Health> {
    let models_loaded = state
        .turns
        .registry
        .all()
        .into_iter()
        .filter_map(|m| {
            let engine = m.loaded()?;
            Some(LoadedModel {
                id: m.id().to_string(),
                generated_tokens: engine.generated_tokens(),
            })
        })
        .collect();
    Json(Health {
        status: "ok",
        uptime_s: state.started.elapsed().as_secs(),
        models_loaded,
        version: env!("CARGO_PKG_VERSION"),
    })
}

/// Prometheus metrics: requests, latency, tokens, queues, plugins, limits.
#[utoipa::path(get, path = "/metrics", tag = "admin",
    responses(
        (status = 200, description = "The metrics, in Prometheus's text format", content_type = "text/plain", body = String),
        (status = 404, description = "Metrics are not enabled", content_type = "text/plain", body = String),
    ))]
async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    // Plugin health is read from the registry at scrape time.
    let plugins = state.turns.plugins.clone();
    if let Ok(entries) = tokio::task::spawn_blocking(move || plugins.list()).await {
        for entry in entries {
            let labels = [("adapter", entry.name.clone())];
            metrics::gauge!("plugboard_plugin_faults", &labels).set(entry.faults as f64);
            metrics::gauge!("plugboard_plugin_swaps", &labels).set(entry.history.len() as f64);
            metrics::gauge!("plugboard_plugin_healthy", &labels)
                .set(if entry.last_error.is_none() { 1.0 } else { 0.0 });
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}

/// `GET /v1/events`: what happens in the server as SSE, one event per thing (`event:` its
/// type, `id:` its place, `data:` the JSON with `type`, `id` and `at`); `resync` when this
/// listener fell behind and missed some.
#[utoipa::path(get, path = "/v1/events", tag = "admin",
    responses((status = 200, description = "Server-sent events: `event` is the type, `data` the event as JSON", content_type = "text/event-stream", body = super::openapi::ServerSentEvent)))]
async fn events() -> impl IntoResponse {
    use futures::StreamExt;
    let stream = crate::events::subscribe().map(|stamped| {
        let event = axum::response::sse::Event::default()
            .event(stamped.event.kind())
            .id(stamped.id.to_string())
            .json_data(&stamped)
            .unwrap_or_default();
        Ok::<_, std::convert::Infallible>(event)
    });
    axum::response::sse::Sse::new(stream).keep_alive(axum::response::sse::KeepAlive::default())
}
