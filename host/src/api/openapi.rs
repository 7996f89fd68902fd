//! The API's description, `GET /openapi.json` (OpenAPI 3.1). Nothing in it is written by hand:
//! each route is registered through utoipa-axum's `routes!` from its handler's
//! `#[utoipa::path]`, so no route is served undescribed, and the bodies' schemas come from the
//! `ToSchema` derives of the types the handlers read and write. What every route may answer
//! besides its own (the access guard's 401/403, the limits' 429/504, the body reader's
//! 400/408/413, a stopping server's 503) and which routes need a key are added here from the
//! rules the middleware applies, for this server's configuration.

use std::sync::Arc;

use axum::Extension;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use utoipa::OpenApi;
use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{ContentBuilder, OpenApi as Description, Ref, ResponseBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;
use super::access::Access;
use super::error::{OllamaErrorBody, OpenAiErrorBody};
use crate::limits::Limits;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "plugboard",
        description = "Open-weight LLMs behind OpenAI- and Ollama-compatible APIs, with tool calls parsed, validated and constrained by hot-swappable wasm adapters.",
        license(name = "Apache-2.0", identifier = "Apache-2.0"),
    ),
    tags(
        (name = "openai", description = "OpenAI-compatible inference"),
        (name = "ollama", description = "Ollama-compatible inference and model information"),
        (name = "models", description = "Downloading, copying and deleting models"),
        (name = "admin", description = "Templates, tokenizers, adapters, events, health and metrics"),
        (name = "ui", description = "The web UI"),
    ),
    components(schemas(OpenAiErrorBody, OllamaErrorBody)),
)]
struct Base;

/// One server-sent event, as an event stream's schema describes each of them (OpenAPI 3.1 has
/// no item schema for streams): `data` is the JSON the route documents, or `[DONE]`.
#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
pub struct ServerSentEvent {
    /// `message` unless the route names its events.
    event: String,
    #[schema(content_media_type = "application/json")]
    data: String,
    id: Option<String>,
}

/// `GET /openapi.json`.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(openapi_json))
}

/// The description as JSON, written once.
#[derive(Clone)]
pub struct DescriptionJson(Arc<str>);

/// This server's API description.
#[utoipa::path(get, path = "/openapi.json", tag = "admin",
    responses((status = 200, description = "The OpenAPI 3.1 description of this server", content_type = "application/json", body = Object)))]
async fn openapi_json(Extension(DescriptionJson(json)): Extension<DescriptionJson>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        json.to_string(),
    )
        .into_response()
}

/// The routes, and their description completed for this server (shared answers, keys, the
/// version), to be added to them as an extension.
pub fn describe(
    routes: OpenApiRouter<AppState>,
    access: &Access,
    limits: &Limits,
) -> (axum::Router<AppState>, DescriptionJson) {
    let (router, paths) = OpenApiRouter::with_openapi(Base::openapi())
        .merge(routes)
        .split_for_parts();
    let mut json =
        serde_json::to_value(complete(paths, access)).expect("an OpenAPI description serializes");
    bound(&mut json, limits);
    (router, DescriptionJson(json.to_string().into()))
}

/// This server's request limits, as bounds on the fields they limit.
fn bound(description: &mut Value, limits: &Limits) {
    let mut set = |schema: &str, field: &str, keyword: &str, most: usize| {
        let pointer = format!("/components/schemas/{schema}/properties/{field}");
        match description
            .pointer_mut(&pointer)
            .and_then(Value::as_object_mut)
        {
            Some(property) => {
                property.insert(keyword.into(), most.into());
            }
            // A schema renamed without this: the description keeps the field unbounded
            // (tests/all/openapi.rs checks each bound).
            None => tracing::warn!("the API description has no {pointer}"),
        }
    };
    if let Some(most) = limits.max_tokens {
        set("Sampling", "max_tokens", "maximum", most);
        set("Sampling", "max_completion_tokens", "maximum", most);
        set("OllamaOptions", "num_predict", "maximum", most);
    }
    for schema in ["ChatRequest", "ChatBody"] {
        set(schema, "messages", "maxItems", limits.max_messages);
        set(schema, "tools", "maxItems", limits.max_tools);
    }
}

/// Keys and limits are read once, at start-up: they cannot change while the server runs.
fn complete(mut description: Description, access: &Access) -> Description {
    description.info.version = env!("CARGO_PKG_VERSION").to_string();
    let keys = !access.keys.is_empty();
    if keys {
        let components = description.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key: Authorization: Bearer KEY"))
                    .build(),
            ),
        );
    }
    let paths = std::mem::take(&mut description.paths.paths);
    for (path, mut item) in paths {
        // axum's catch-all `{*id}` is an ordinary path parameter to OpenAPI.
        let public = path.replace("{*", "{");
        let ollama = path.starts_with("/api/");
        let scope = access.scope_of(&public);
        for operation in operations(&mut item) {
            let error = |description: &str| error_response(description, ollama);
            let responses = &mut operation.responses.responses;
            let mut add = |status: &str, description: &str| {
                responses
                    .entry(status.to_string())
                    .or_insert_with(|| error(description).into());
            };
            if operation.request_body.is_some() {
                add("400", "The body is not JSON, or not of this shape");
                add("408", "The body stopped arriving");
                add("413", "The body is larger than 4 MiB");
            }
            add(
                "403",
                "The request's origin or host is not allowed here, or its key lacks the scope",
            );
            add("503", "The server is stopping");
            if scope == Some(crate::keys::Scope::Inference) {
                add(
                    "429",
                    "The key has its most requests in flight, or has used its rate",
                );
                add("504", "The request ran past the server's time limit");
            }
            if keys {
                if scope.is_some() {
                    add("401", "No API key, or one this server does not accept");
                    operation.security = Some(vec![SecurityRequirement::new(
                        "bearer",
                        Vec::<String>::new(),
                    )]);
                } else {
                    operation.security = Some(vec![SecurityRequirement::default()]);
                }
            }
        }
        description.paths.paths.insert(public, item);
    }
    description
}

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut Operation> {
    [
        &mut item.get,
        &mut item.post,
        &mut item.put,
        &mut item.delete,
        &mut item.patch,
        &mut item.head,
        &mut item.options,
        &mut item.trace,
    ]
    .into_iter()
    .filter_map(Option::as_mut)
}

fn error_response(description: &str, ollama: bool) -> utoipa::openapi::Response {
    let schema = if ollama {
        "#/components/schemas/OllamaErrorBody"
    } else {
        "#/components/schemas/OpenAiErrorBody"
    };
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(Ref::new(schema))).build(),
        )
        .build()
}
