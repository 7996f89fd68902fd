//! Model management over HTTP: Ollama's `/api/pull` (NDJSON progress), `/api/delete` and
//! `/api/copy`, and plugboard's `/v1/models/pull` (SSE progress, for the UI). A pulled model
//! serves as soon as its pull succeeds; a client that goes away stops the download when no
//! one else waits for it (the part is kept for the next pull to resume).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::error::{ApiError, OllamaErrorBody, OpenAiErrorBody};
use super::{ApiJson, AppState};
use crate::registry::{Registry, RegistryError, Source};
use crate::store::{self, PullState, Pulled};
use crate::turn::TurnError;

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(ollama_pull))
        .routes(routes!(ollama_delete))
        .routes(routes!(ollama_copy))
        .routes(routes!(pull))
}

#[derive(Deserialize, ToSchema)]
struct PullBody {
    #[serde(alias = "name")]
    model: String,
    /// Ollama's: registries without TLS. The hub's address is the server's setting.
    #[serde(default)]
    #[allow(dead_code)]
    insecure: bool,
    stream: Option<bool>,
}

/// The end of a pull asked for with `stream: false`, in Ollama's API.
#[derive(Serialize, ToSchema)]
struct OllamaPulled {
    /// `success`.
    status: &'static str,
}

/// The end of a pull: the file, and the model that now serves it.
#[derive(Serialize, ToSchema)]
struct PullSuccess {
    /// `success`.
    status: &'static str,
    /// The id the model serves under, when the file is one of a configured model.
    model: Option<String>,
    #[schema(value_type = String)]
    path: std::path::PathBuf,
    size: u64,
    /// `sha256:<hex>` for files kept in Git LFS, else the hub's etag.
    digest: String,
    /// Whether bytes came over the network (false: the file was already here).
    downloaded: bool,
}

/// One step of a pull, as both APIs report it.
enum Step {
    Manifest,
    Waiting {
        digest: String,
    },
    File {
        digest: String,
        total: u64,
        completed: u64,
    },
    Verifying,
    Writing,
    Success {
        model: Option<String>,
        pulled: Pulled,
    },
    Failed(ApiError),
}

/// Reads the store (and config file) again after a pull or a delete, on a blocking thread. A
/// config file broken meanwhile does not fail what was done: it is logged, and the models
/// serving stay.
async fn refresh(registry: &Arc<Registry>) {
    let registry = Arc::clone(registry);
    let outcome = tokio::task::spawn_blocking(move || registry.refresh()).await;
    if let Ok(Err(e)) = outcome {
        tracing::warn!("the model set is not read again: {e}");
    }
}

fn error(e: RegistryError) -> ApiError {
    ApiError::from(&TurnError::Registry(e))
}

/// Runs a pull and reports its steps; the last is `Success` or `Failed`. The pull's progress
/// is let go when the receiver is dropped.
fn steps(registry: Arc<Registry>, name: String) -> mpsc::Receiver<Step> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(async move {
        let run = async {
            let _ = tx.send(Step::Manifest).await;
            let target = match registry.pull_target(&name).await {
                Ok(target) => target,
                Err(e) => {
                    let _ = tx.send(Step::Failed(error(e))).await;
                    return;
                }
            };
            let mut progress = registry.store.pull(target.clone());
            let mut counted = false;
            // Each step is reported even when the next came before it was seen.
            let mut verified = false;
            loop {
                let state = progress.borrow_and_update().clone();
                let step = match state {
                    PullState::Resolving => None,
                    PullState::Waiting { digest } => Some(Step::Waiting { digest }),
                    PullState::Downloading {
                        digest,
                        total,
                        completed,
                    } => {
                        counted = true;
                        Some(Step::File {
                            digest,
                            total,
                            completed,
                        })
                    }
                    PullState::Verifying { .. } => {
                        verified = true;
                        Some(Step::Verifying)
                    }
                    PullState::Done(outcome) => {
                        let step = match outcome {
                            Ok(pulled) => {
                                if !counted {
                                    // Already here: one line that shows it whole.
                                    let _ = tx
                                        .send(Step::File {
                                            digest: pulled.digest.clone(),
                                            total: pulled.size,
                                            completed: pulled.size,
                                        })
                                        .await;
                                }
                                if !verified {
                                    let _ = tx.send(Step::Verifying).await;
                                }
                                let _ = tx.send(Step::Writing).await;
                                refresh(&registry).await;
                                Step::Success {
                                    model: registry.model_of(&target).map(|m| m.id().to_string()),
                                    pulled,
                                }
                            }
                            Err(e) => Step::Failed(error(RegistryError::Pull {
                                id: name.clone(),
                                error: e,
                            })),
                        };
                        let _ = tx.send(step).await;
                        return;
                    }
                };
                if let Some(step) = step {
                    let _ = tx.send(step).await;
                }
                if progress.changed().await.is_err() {
                    let outcome = store::finished(progress, &target).await;
                    if let Err(e) = outcome {
                        let _ = tx
                            .send(Step::Failed(error(RegistryError::Pull {
                                id: name.clone(),
                                error: e,
                            })))
                            .await;
                    }
                    return;
                }
            }
        };
        tokio::select! {
            _ = run => {}
            _ = tx.closed() => {}
        }
    });
    rx
}

/// Ollama's `/api/pull`: NDJSON progress lines (`pulling manifest`, per file `pulling <digest>`
/// with `total` and `completed`, `verifying sha256 digest`, `writing manifest`, `success`),
/// an `{"error"}` line when it fails; with `stream: false`, one answer at the end.
#[utoipa::path(post, path = "/api/pull", tag = "models",
    request_body = PullBody,
    responses(
        (status = 200, description = "Progress lines (`status`, and per file `digest`, `total`, `completed`; an `error` line when it fails), or with `stream: false` the end", content(
            (OllamaPulled = "application/json"),
            (String = "application/x-ndjson"))),
        (status = 400, description = "A model that is not a hub file: there is nothing to pull", body = OllamaErrorBody),
        (status = 404, description = "No such model at the hub (`stream: false`)", body = OllamaErrorBody),
        (status = 500, description = "The download could not be written, or stopped (`stream: false`)", body = OllamaErrorBody),
        (status = 502, description = "The hub failed (`stream: false`)", body = OllamaErrorBody),
        (status = 507, description = "Not enough disk space (`stream: false`)", body = OllamaErrorBody),
    ))]
async fn ollama_pull(State(state): State<AppState>, ApiJson(body): ApiJson<PullBody>) -> Response {
    let rx = steps(Arc::clone(&state.turns.registry), body.model);
    if body.stream == Some(false) {
        let mut steps = ReceiverStream::new(rx);
        while let Some(step) = steps.next().await {
            match step {
                Step::Success { .. } => {
                    return Json(OllamaPulled { status: "success" }).into_response();
                }
                Step::Failed(e) => return e.ollama().into_response(),
                _ => {}
            }
        }
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the pull stopped",
        )
        .ollama()
        .into_response();
    }
    let lines = ReceiverStream::new(rx).map(|step| {
        let line = match step {
            Step::Manifest => json!({"status": "pulling manifest"}),
            Step::Waiting { digest } => {
                json!({"status": format!("waiting for another download of {}", short(&digest))})
            }
            Step::File {
                digest,
                total,
                completed,
            } => json!({
                "status": format!("pulling {}", short(&digest)),
                "digest": digest,
                "total": total,
                "completed": completed,
            }),
            Step::Verifying => json!({"status": "verifying sha256 digest"}),
            Step::Writing => json!({"status": "writing manifest"}),
            Step::Success { .. } => json!({"status": "success"}),
            Step::Failed(e) => json!({"error": e.message}),
        };
        Ok::<_, std::convert::Infallible>(format!("{line}\n"))
    });
    (
        [(header::CONTENT_TYPE, "application/x-ndjson")],
        Body::from_stream(lines),
    )
        .into_response()
}

/// `abcdef012345` of `sha256:abcdef012345…`, as Ollama shows a layer.
fn short(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    &hex[..hex.len().min(12)]
}

/// `POST /v1/models/pull {"model"}`: SSE events `{"status": "pulling_manifest" |
/// "downloading" | "waiting" | "verifying" | "writing" | "success" | "error", …}`; the
/// success event names the model that now serves the file. With `stream: false`, that
/// event's body alone, or an OpenAI error.
#[utoipa::path(post, path = "/v1/models/pull", tag = "models",
    request_body = PullBody,
    responses(
        (status = 200, description = "Progress events (`status`: pulling_manifest, waiting, downloading, verifying, writing, success or error), or with `stream: false` the end", content(
            (PullSuccess = "application/json"),
            (super::openapi::ServerSentEvent = "text/event-stream"))),
        (status = 400, description = "A model that is not a hub file: there is nothing to pull", body = OpenAiErrorBody),
        (status = 404, description = "No such model at the hub (`stream: false`)", body = OpenAiErrorBody),
        (status = 500, description = "The download could not be written, or stopped (`stream: false`)", body = OpenAiErrorBody),
        (status = 502, description = "The hub failed (`stream: false`)", body = OpenAiErrorBody),
        (status = 507, description = "Not enough disk space (`stream: false`)", body = OpenAiErrorBody),
    ))]
async fn pull(State(state): State<AppState>, ApiJson(body): ApiJson<PullBody>) -> Response {
    let rx = steps(Arc::clone(&state.turns.registry), body.model);
    let event = |step: Step| -> Result<Value, ApiError> {
        Ok(match step {
            Step::Manifest => json!({"status": "pulling_manifest"}),
            Step::Waiting { digest } => json!({"status": "waiting", "digest": digest}),
            Step::File {
                digest,
                total,
                completed,
            } => {
                json!({"status": "downloading", "digest": digest, "total": total, "completed": completed})
            }
            Step::Verifying => json!({"status": "verifying"}),
            Step::Writing => json!({"status": "writing"}),
            Step::Success { model, pulled } => json!(PullSuccess {
                status: "success",
                model,
                path: pulled.path,
                size: pulled.size,
                digest: pulled.digest,
                downloaded: pulled.downloaded,
            }),
            Step::Failed(e) => return Err(e),
        })
    };
    if body.stream == Some(false) {
        let mut steps = ReceiverStream::new(rx);
        while let Some(step) = steps.next().await {
            match step {
                Step::Success { .. } | Step::Failed(_) => {
                    return match event(step) {
                        Ok(value) => Json(value).into_response(),
                        Err(e) => e.into_response(),
                    };
                }
                _ => {}
            }
        }
        return ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            "the pull stopped",
        )
        .into_response();
    }
    let events = ReceiverStream::new(rx).map(move |step| {
        let data = match event(step) {
            Ok(value) => value,
            Err(e) => {
                let mut body = e.openai_body();
                body["status"] = "error".into();
                body
            }
        };
        Ok::<_, std::convert::Infallible>(Event::default().data(data.to_string()))
    });
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}

#[derive(Deserialize, ToSchema)]
struct DeleteBody {
    #[serde(alias = "name")]
    model: String,
}

/// Ollama's `DELETE /api/delete`: a copy's name goes; a pulled model's file leaves the store
/// (unloaded first). A local file or a remote model is not the store's to delete.
#[utoipa::path(delete, path = "/api/delete", tag = "models",
    request_body = DeleteBody,
    responses(
        (status = 200, description = "Deleted"),
        (status = 400, description = "A local file or a remote model, which the store does not hold", body = OllamaErrorBody),
        (status = 404, description = "No such pulled model", body = OllamaErrorBody),
        (status = 500, description = "The file could not be removed", body = OllamaErrorBody),
    ))]
async fn ollama_delete(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<DeleteBody>,
) -> Result<StatusCode, ApiError> {
    let registry = Arc::clone(&state.turns.registry);
    if registry.copies().contains_key(&body.model) {
        registry.forget_copies(&body.model);
        return Ok(StatusCode::OK);
    }
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("model '{}' not found", body.model),
        )
        .ollama()
    };
    let entry = registry.get(&body.model).map_err(|_| not_found())?;
    match (&entry.decl.source, entry.hub_file()) {
        (Source::HuggingFace { .. }, Some(_)) if entry.available() => {}
        (Source::HuggingFace { .. }, _) => return Err(not_found()),
        (Source::Path(_), _) => {
            return Err(ApiError::bad_request(
                format!(
                    "model '{}' is a local file, not a pulled one: plugboard does not delete it",
                    entry.id()
                ),
                Some("model"),
            )
            .ollama());
        }
        (Source::Backend { .. }, _) => {
            return Err(ApiError::bad_request(
                format!("model '{}' is served by a backend", entry.id()),
                Some("model"),
            )
            .ollama());
        }
    };
    entry.unload();
    let removing = Arc::clone(&registry);
    let removed = Arc::clone(&entry);
    tokio::task::spawn_blocking(move || removing.remove_pulled(&removed))
        .await
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
            .ollama()
        })?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                e.to_string(),
            )
            .ollama()
        })?;
    registry.forget_copies(entry.id());
    refresh(&registry).await;
    Ok(StatusCode::OK)
}

#[derive(Deserialize, ToSchema)]
struct CopyBody {
    source: String,
    #[schema(min_length = 1)]
    destination: String,
}

/// Ollama's `POST /api/copy`: another name for a model (kept while the server runs).
#[utoipa::path(post, path = "/api/copy", tag = "models",
    request_body = CopyBody,
    responses(
        (status = 200, description = "Copied"),
        (status = 400, description = "The destination is taken or not a valid name", body = OllamaErrorBody),
        (status = 404, description = "No such model", body = OllamaErrorBody),
    ))]
async fn ollama_copy(
    State(state): State<AppState>,
    ApiJson(body): ApiJson<CopyBody>,
) -> Result<StatusCode, ApiError> {
    state
        .turns
        .registry
        .copy(&body.source, &body.destination)
        .map_err(|e| match e {
            RegistryError::UnknownModel(_) => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("model '{}' not found", body.source),
            )
            .ollama(),
            other => ApiError::bad_request(other.to_string(), Some("destination")).ollama(),
        })?;
    Ok(StatusCode::OK)
}
