//! The HTTP server: OpenAI- and Ollama-compatible APIs, admin endpoints and Prometheus metrics,
//! on axum. Handlers translate between the wire shapes and the chat turns ([`Turns`]); they never
//! touch the engine or wasmtime directly.

mod access;
mod admin;
mod error;
mod inflight;
mod manage;
mod ollama;
mod openai;
mod openapi;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router as HttpRouter;
use axum::extract::{FromRequest, Request};
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::serve::ListenerExt;
use metrics_exporter_prometheus::PrometheusHandle;
use serde::de::DeserializeOwned;
use utoipa_axum::router::OpenApiRouter;

use crate::turn::Turns;
pub use access::Access;
use error::ApiError;
pub use inflight::{CallerLimits, Inflight, Rate};

/// Largest request body accepted (413 beyond).
pub const MAX_BODY_BYTES: usize = 4 << 20;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub turns: Arc<Turns>,
    pub metrics: Option<PrometheusHandle>,
    pub started: Instant,
    /// Whether `GET /` serves the web UI.
    pub ui: bool,
    /// Keys, origins and hosts the server answers.
    pub access: Arc<access::Access>,
    /// Requests in flight: per-key limits, time limits, the server's shutdown.
    pub inflight: Arc<inflight::Inflight>,
}

/// A JSON body, with errors in the OpenAI shape: 413 when too large, 400 when not JSON or of
/// the wrong types (the message names the field).
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, Self::Rejection> {
        // In the shape of the API the route belongs to.
        let ollama = req.uri().path().starts_with("/api/");
        let shape = |e: ApiError| if ollama { e.ollama() } else { e };
        let bytes = read_body(req.into_body(), BODY_IDLE).await.map_err(shape)?;
        let value: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| {
            shape(ApiError::bad_request(
                format!("the request body is not valid JSON: {e}"),
                None,
            ))
        })?;
        match T::deserialize(&value) {
            Ok(body) => Ok(ApiJson(body)),
            // JSON Schema's integers include 3.0; serde's do not. A body that fails as it is
            // is read again with such numbers as integers, outside the free-form JSON it
            // carries (which goes on as it came).
            Err(e) => T::deserialize(&whole_numbers_as_integers(value))
                .map(ApiJson)
                .map_err(|_| shape(ApiError::bad_request(format!("invalid request: {e}"), None))),
        }
    }
}

/// A path parameter, with one that cannot be read (bad percent-encoding) refused in the API's
/// error shape rather than axum's plain text.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> axum::extract::FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(ApiPath(value)),
            Err(e) => {
                let error = ApiError::bad_request(e.body_text(), None);
                Err(if parts.uri.path().starts_with("/api/") {
                    error.ollama()
                } else {
                    error
                })
            }
        }
    }
}

/// Request fields whose JSON is the client's own (conversations, schemas, arguments, template
/// variables): never rewritten.
const FREE_FORM: &[&str] = &[
    "messages",
    "tools",
    "tool_choice",
    "response_format",
    "format",
    "chat_template_kwargs",
];

/// `value` with every whole number (`3.0`) written as an integer, but in [`FREE_FORM`] fields.
fn whole_numbers_as_integers(value: serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match value {
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
            _ => Value::Number(n),
        },
        Value::Array(items) => {
            Value::Array(items.into_iter().map(whole_numbers_as_integers).collect())
        }
        Value::Object(map) => Value::Object(
            map.into_iter()
                .map(|(k, v)| match FREE_FORM.contains(&k.as_str()) {
                    true => (k, v),
                    false => (k, whole_numbers_as_integers(v)),
                })
                .collect(),
        ),
        other => other,
    }
}

/// Past the limit the rest of a body is still read and dropped, up to this much more: the
/// client is usually still sending, and a connection closed under it loses the 413 to a reset.
const DRAIN_BYTES: usize = 64 << 20;

/// How long a request body may pause: a client that stops sending gets a 408 instead of
/// holding its connection (and a handler) for ever.
const BODY_IDLE: std::time::Duration = std::time::Duration::from_secs(30);

/// The request body, at most [`MAX_BODY_BYTES`] of it, no piece later than `idle` after the
/// one before.
async fn read_body(body: axum::body::Body, idle: std::time::Duration) -> Result<Vec<u8>, ApiError> {
    use futures::StreamExt;
    let mut stream = body.into_data_stream();
    let mut bytes = Vec::new();
    let mut seen = 0usize;
    loop {
        let Ok(next) = tokio::time::timeout(idle, stream.next()).await else {
            if seen > MAX_BODY_BYTES {
                break;
            }
            return Err(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "invalid_request_error",
                format!(
                    "the request body stopped arriving for {} s",
                    idle.as_secs_f32()
                ),
            )
            .code("body_timeout"));
        };
        let Some(chunk) = next else { break };
        let chunk = match chunk {
            Ok(chunk) => chunk,
            Err(_) if seen > MAX_BODY_BYTES => break,
            Err(e) => {
                return Err(ApiError::bad_request(
                    format!("cannot read the request body: {e}"),
                    None,
                ));
            }
        };
        seen += chunk.len();
        if seen <= MAX_BODY_BYTES {
            bytes.extend_from_slice(&chunk);
        } else if seen > MAX_BODY_BYTES + DRAIN_BYTES {
            break;
        }
    }
    if seen > MAX_BODY_BYTES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "invalid_request_error",
            format!(
                "the request body is larger than {} MiB",
                MAX_BODY_BYTES >> 20
            ),
        )
        .code("body_too_large"));
    }
    Ok(bytes)
}

/// Counts requests and their latency by route and status.
async fn observe(req: Request, next: Next) -> Response {
    let path = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "unmatched".into());
    let start = Instant::now();
    let response = next.run(req).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("plugboard_requests_total", "path" => path.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("plugboard_request_duration_seconds", "path" => path)
        .record(start.elapsed().as_secs_f64());
    response
}

/// The whole HTTP application.
pub fn app(state: AppState) -> HttpRouter {
    let ui = if state.ui {
        ui::routes()
    } else {
        OpenApiRouter::new()
    };
    let routes = OpenApiRouter::new()
        .merge(ui)
        .merge(openai::routes())
        .merge(ollama::routes())
        .merge(admin::routes())
        .merge(manage::routes())
        .merge(openapi::routes());
    let (routes, description) = openapi::describe(routes, &state.access, &state.turns.limits);
    routes
        .layer(axum::Extension(description))
        .route_layer(middleware::from_fn(observe))
        .fallback(|| async {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                "no such endpoint",
            )
        })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.inflight),
            inflight::track,
        ))
        .layer(middleware::from_fn_with_state(
            Arc::clone(&state.access),
            access::guard,
        ))
        .layer(state.access.cors())
        .with_state(state)
}

/// Installs the Prometheus recorder (once per process).
pub fn install_metrics() -> Option<PrometheusHandle> {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets(&[
            0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
        ])
        .ok()?
        .install_recorder()
        .ok()
}

/// Serves until `shutdown` completes; then takes no new requests and lets those in flight
/// finish for up to `grace`, after which they end with an error in their own format.
pub async fn serve(
    state: AppState,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    grace: std::time::Duration,
) -> std::io::Result<()> {
    let addr: Option<SocketAddr> = listener.local_addr().ok();
    tracing::info!(
        "listening on http://{}",
        addr.map(|a| a.to_string()).unwrap_or_default()
    );
    // Without TCP_NODELAY a stream's second small write waits for the client's delayed ACK
    // (tens of milliseconds): every SSE chunk after the first would be late.
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    let inflight = Arc::clone(&state.inflight);
    let draining = {
        let inflight = Arc::clone(&inflight);
        async move {
            shutdown.await;
            inflight.drain(grace);
        }
    };
    let server = axum::serve(listener, app(state)).with_graceful_shutdown(draining);
    // Answers that ended at the deadline are given a moment to reach their clients; a
    // connection that still lingers after it does not hold the process.
    tokio::select! {
        served = server => served,
        _ = async {
            inflight.ended().await;
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
        } => Ok(()),
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::body::{Body, Bytes};

    use super::*;

    #[tokio::test]
    async fn a_body_that_stops_arriving_gets_a_408() {
        let idle = Duration::from_millis(50);
        let stalled = futures::stream::pending::<Result<Bytes, std::io::Error>>();
        let error = read_body(Body::from_stream(stalled), idle)
            .await
            .expect_err("times out");
        assert_eq!(error.status, StatusCode::REQUEST_TIMEOUT);
        let whole = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from_static(b"{}"))]);
        let bytes = read_body(Body::from_stream(whole), idle)
            .await
            .expect("reads");
        assert_eq!(bytes, b"{}");
    }
}
