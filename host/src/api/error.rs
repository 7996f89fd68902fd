//! Errors in each API's own shape: OpenAI's `{"error": {"message", "type", "param", "code"}}`
//! and Ollama's `{"error": "…"}`, with the status that says what went wrong.

use axum::Json;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::backends::BackendError;
use crate::engine::EngineError;
use crate::plugins::CallError;
use crate::registry::RegistryError;
use crate::turn::TurnError;

/// Which API's error shape to answer in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shape {
    OpenAi,
    Ollama,
}

/// An error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub kind: &'static str,
    pub code: Option<String>,
    pub param: Option<String>,
    pub message: String,
    pub shape: Shape,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            code: None,
            param: None,
            message: message.into(),
            shape: Shape::OpenAi,
        }
    }

    pub fn bad_request(message: impl Into<String>, param: Option<&str>) -> ApiError {
        ApiError {
            param: param.map(str::to_string),
            ..ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
        }
    }

    pub fn code(mut self, code: impl Into<String>) -> ApiError {
        self.code = Some(code.into());
        self
    }

    pub fn ollama(mut self) -> ApiError {
        self.shape = Shape::Ollama;
        self
    }

    /// The body of this error, in the OpenAI shape (also used inside SSE streams).
    pub fn openai_body(&self) -> serde_json::Value {
        serde_json::to_value(self.openai_error()).unwrap_or_default()
    }

    fn openai_error(&self) -> OpenAiErrorBody {
        OpenAiErrorBody {
            error: OpenAiError {
                message: self.message.clone(),
                kind: self.kind.to_string(),
                param: self.param.clone(),
                code: self.code.clone(),
            },
        }
    }
}

/// An error in OpenAI's shape.
#[derive(Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    pub error: OpenAiError,
}

#[derive(Serialize, ToSchema)]
pub struct OpenAiError {
    /// What went wrong, for a person.
    pub message: String,
    /// The class: `invalid_request_error`, `rate_limit_error`, `server_error`, `invalid_tool_call`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The request field at fault, when one is (`messages[2].content`).
    pub param: Option<String>,
    /// What went wrong, for a program (`model_not_found`, `context_length_exceeded`, …).
    pub code: Option<String>,
}

/// An error in Ollama's shape.
#[derive(Serialize, ToSchema)]
pub struct OllamaErrorBody {
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = match self.shape {
            Shape::OpenAi => (self.status, Json(self.openai_error())).into_response(),
            Shape::Ollama => (
                self.status,
                Json(OllamaErrorBody {
                    error: self.message,
                }),
            )
                .into_response(),
        };
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert("retry-after", HeaderValue::from_static("1"));
        }
        response
    }
}

impl From<&TurnError> for ApiError {
    fn from(e: &TurnError) -> ApiError {
        let message = e.to_string();
        let server = |code: &str| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "server_error",
                message.clone(),
            )
            .code(code)
        };
        match e {
            TurnError::InvalidRequest(r) => ApiError {
                code: r.code.map(str::to_string),
                ..ApiError::bad_request(r.message.clone(), r.param.as_deref())
            },
            TurnError::Limit(l) => {
                ApiError::bad_request(l.message.clone(), Some(l.param)).code(l.code)
            }
            TurnError::Registry(RegistryError::UnknownModel(_)) => ApiError {
                param: Some("model".into()),
                ..ApiError::new(
                    StatusCode::NOT_FOUND,
                    "invalid_request_error",
                    message.clone(),
                )
                .code("model_not_found")
            },
            TurnError::Registry(RegistryError::NotDownloaded { .. }) => ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                message.clone(),
            )
            .code("model_not_available"),
            TurnError::Registry(RegistryError::NotPullable { .. }) => {
                ApiError::bad_request(message.clone(), Some("model")).code("model_not_pullable")
            }
            TurnError::Registry(RegistryError::Remote { .. }) => {
                ApiError::bad_request(message.clone(), Some("model")).code("model_is_remote")
            }
            TurnError::Registry(RegistryError::Pull { error, .. }) => ApiError::new(
                StatusCode::from_u16(error.status()).unwrap_or(StatusCode::BAD_GATEWAY),
                if error.status() < 500 {
                    "invalid_request_error"
                } else {
                    "server_error"
                },
                message.clone(),
            )
            .code("model_download_failed"),
            TurnError::Registry(RegistryError::TooLarge { .. }) => ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                "server_error",
                message.clone(),
            )
            .code("model_too_large"),
            TurnError::Registry(_) => server("model_load_failed"),
            TurnError::Engine(EngineError::Busy(_)) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                message.clone(),
            )
            .code("queue_full"),
            TurnError::Engine(EngineError::ContextOverflow { .. }) => ApiError {
                param: Some("messages".into()),
                ..ApiError::bad_request(message.clone(), None).code("context_length_exceeded")
            },
            TurnError::Engine(EngineError::Tokenize(_)) => {
                ApiError::bad_request(message.clone(), None)
            }
            TurnError::Engine(_) => server("inference_error"),
            TurnError::Adapter(CallError::Adapter { .. }) => {
                ApiError::bad_request(message.clone(), Some("messages")).code("template_error")
            }
            TurnError::Adapter(CallError::Busy { .. }) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                message.clone(),
            )
            .code("adapter_busy"),
            TurnError::Adapter(_) => server("adapter_error"),
            TurnError::AdapterMissing(_) => server("adapter_missing"),
            TurnError::ToolCallRejected(p) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_tool_call",
                message.clone(),
            )
            .code(p.kind.as_str()),
            TurnError::ToolCallMissing(_) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_tool_call",
                message.clone(),
            )
            .code("tool_call_missing"),
            TurnError::Backend(b) => {
                let status = |status: StatusCode, code: &str| {
                    ApiError::new(status, "server_error", message.clone()).code(code)
                };
                match b {
                    BackendError::Unreachable { .. } => {
                        status(StatusCode::BAD_GATEWAY, "backend_unreachable")
                    }
                    BackendError::Timeout { .. } => {
                        status(StatusCode::GATEWAY_TIMEOUT, "backend_timeout")
                    }
                    BackendError::Overloaded { .. } | BackendError::CoolingDown { .. } => {
                        status(StatusCode::SERVICE_UNAVAILABLE, "backend_overloaded")
                    }
                    BackendError::ContextOverflow { .. } => ApiError {
                        param: Some("messages".into()),
                        ..ApiError::bad_request(message.clone(), None)
                            .code("context_length_exceeded")
                    },
                    BackendError::Status { .. } | BackendError::InBand { .. } => {
                        status(StatusCode::BAD_GATEWAY, "backend_error")
                    }
                    BackendError::Protocol { .. } => {
                        status(StatusCode::BAD_GATEWAY, "backend_protocol_error")
                    }
                    BackendError::MissingKey { .. } => server("backend_key_missing"),
                }
            }
            TurnError::Task(_) | TurnError::Unfinished => server("internal_error"),
        }
    }
}

impl From<TurnError> for ApiError {
    fn from(e: TurnError) -> ApiError {
        ApiError::from(&e)
    }
}
