//! Admin and introspection: render a template, tokenize, list and exercise adapters, health
//! and Prometheus metrics.

use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router as HttpRouter};
use serde::Deserialize;
use serde_json::{Value, json};

use super::error::ApiError;
use super::{ApiJson, AppState};
use crate::adapter::ParseOptions;
use crate::chat::{ChatRequest, tools_from_json};
use crate::router::RouterError;

pub fn routes() -> HttpRouter<AppState> {
    HttpRouter::new()
        .route("/apply-template", post(apply_template))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/v1/adapters", get(adapters))
        .route("/v1/adapters/{name}/parse", post(parse))
        .route("/v1/events", get(events))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
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
    let router = state.router.clone();
    let engine = tokio::task::spawn_blocking(move || {
        let entry = router.registry.get(&model).map_err(RouterError::from)?;
        router.registry.engine(&entry).map_err(RouterError::from)
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
                .router
                .registry
                .default_model()
                .map(|m| m.id().to_string())
        })
        .ok_or_else(|| {
            ApiError::bad_request("name a model: there is no default model", Some("model"))
        })
}

#[derive(Deserialize)]
struct TemplateBody {
    model: Option<String>,
    #[serde(flatten)]
    chat: ChatRequest,
}

async fn apply_template(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TemplateBody>,
) -> Result<Json<Value>, ApiError> {
    let model = model_name(&state, body.model)?;
    let router = state.router.clone();
    let (prompt, adapter) = tokio::task::spawn_blocking(move || router.render(&model, &body.chat))
        .await
        .map_err(internal)??;
    Ok(Json(json!({
        "prompt": prompt.text,
        "stop": prompt.stop,
        "tool_call_triggers": prompt.tool_call_triggers,
        "reasoning_open": prompt.reasoning_open,
        "adapter": adapter,
    })))
}

#[derive(Deserialize)]
struct TokenizeBody {
    model: Option<String>,
    content: String,
    #[serde(default)]
    with_pieces: bool,
}

async fn tokenize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<TokenizeBody>,
) -> Result<Json<Value>, ApiError> {
    let engine = loaded_engine(&state, body.model).await?;
    let tokenizer = engine.tokenizer();
    let ids = tokenizer
        .encode(&body.content)
        .map_err(|e| ApiError::bad_request(e.to_string(), Some("content")))?;
    if body.with_pieces {
        let pieces: Vec<Value> = ids
            .iter()
            .map(|id| json!({"id": id, "piece": tokenizer.decode(&[*id]).unwrap_or_default()}))
            .collect();
        return Ok(Json(json!({"tokens": pieces})));
    }
    Ok(Json(json!({"tokens": ids})))
}

#[derive(Deserialize)]
struct DetokenizeBody {
    model: Option<String>,
    tokens: Vec<u32>,
}

async fn detokenize(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DetokenizeBody>,
) -> Result<Json<Value>, ApiError> {
    let engine = loaded_engine(&state, body.model).await?;
    let vocab = engine.info().vocab_size;
    if let Some(bad) = body.tokens.iter().find(|id| **id as usize >= vocab) {
        return Err(ApiError::bad_request(
            format!("token id {bad} is outside the vocabulary of {vocab}"),
            Some("tokens"),
        ));
    }
    let content = engine.tokenizer().decode(&body.tokens).map_err(internal)?;
    Ok(Json(json!({"content": content})))
}

async fn adapters(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let plugins = state.router.plugins.clone();
    let entries = tokio::task::spawn_blocking(move || plugins.list())
        .await
        .map_err(internal)?;
    Ok(Json(json!({"object": "list", "data": entries})))
}

#[derive(Deserialize)]
struct ParseBody {
    text: String,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    reasoning_open: bool,
    #[serde(default)]
    lenient: bool,
}

async fn parse(
    State(state): State<AppState>,
    Path(name): Path<String>,
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
    let plugins = state.router.plugins.clone();
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
            .map_err(|e| ApiError::from(RouterError::Adapter(e)))?;
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

async fn health(State(state): State<AppState>) -> Json<Value> {
    let loaded: Vec<Value> = state
        .router
        .registry
        .all()
        .into_iter()
        .filter_map(|m| {
            let engine = m.loaded()?;
            Some(json!({"id": m.id(), "generated_tokens": engine.generated_tokens()}))
        })
        .collect();
    Json(json!({
        "status": "ok",
        "uptime_s": state.started.elapsed().as_secs(),
        "models_loaded": loaded,
        "version": env!("CARGO_PKG_VERSION"),
    }))
}

async fn metrics(State(state): State<AppState>) -> Response {
    let Some(handle) = &state.metrics else {
        return (StatusCode::NOT_FOUND, "metrics are not enabled").into_response();
    };
    // Plugin health is read from the registry at scrape time.
    let plugins = state.router.plugins.clone();
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
