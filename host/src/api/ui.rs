//! The web UI: a page and its ES modules, built into the binary (no build step, nothing
//! fetched from elsewhere). It speaks only the public APIs, so it is also their example.

use std::sync::OnceLock;

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::AppState;

/// The UI's files: name, content type, bytes.
const FILES: &[(&str, &str, &str)] = &[
    (
        "index.html",
        "text/html; charset=utf-8",
        include_str!("../../ui/index.html"),
    ),
    (
        "style.css",
        "text/css; charset=utf-8",
        include_str!("../../ui/style.css"),
    ),
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/app.js"),
    ),
    (
        "api.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/api.js"),
    ),
    (
        "models.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/models.js"),
    ),
    (
        "chat.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/chat.js"),
    ),
    (
        "adapters.js",
        "text/javascript; charset=utf-8",
        include_str!("../../ui/adapters.js"),
    ),
];

/// Everything the page loads comes from this server; nothing inline runs.
const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; img-src 'self' data:; \
     object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(page))
        .routes(routes!(module))
}

/// The web UI's page.
#[utoipa::path(get, path = "/", tag = "ui",
    responses(
        (status = 200, description = "The page", content_type = "text/html", body = String),
        (status = 304, description = "The browser's copy is current (If-None-Match)"),
    ))]
async fn page(headers: HeaderMap) -> Response {
    file("index.html", &headers)
}

/// One of the web UI's scripts or its style sheet.
#[utoipa::path(get, path = "/ui/{name}", tag = "ui",
    params(("name" = String, Path, description = "The file: app.js, api.js, chat.js, models.js, adapters.js or style.css")),
    responses(
        (status = 200, description = "The file", content(
            (String = "text/javascript"), (String = "text/css"), (String = "text/html"))),
        (status = 304, description = "The browser's copy is current (If-None-Match)"),
        (status = 400, description = "The name cannot be read", body = super::error::OpenAiErrorBody),
        (status = 404, description = "No such file", body = super::error::OpenAiErrorBody),
    ))]
async fn module(super::ApiPath(name): super::ApiPath<String>, headers: HeaderMap) -> Response {
    file(&name, &headers)
}

/// One file, or 304 when the browser has it already (the ETag is its content's hash, so a
/// new binary's UI is never served from a stale cache).
fn file(name: &str, headers: &HeaderMap) -> Response {
    let Some((index, (_, content_type, body))) =
        FILES.iter().enumerate().find(|(_, (n, _, _))| *n == name)
    else {
        return super::error::ApiError::new(
            StatusCode::NOT_FOUND,
            "invalid_request_error",
            format!("the web UI has no file '{name}'"),
        )
        .into_response();
    };
    let etag = &etags()[index];
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|sent| sent.as_bytes() == etag.as_bytes());
    let mut response = if fresh {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, *content_type)], *body).into_response()
    };
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    response
}

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        FILES
            .iter()
            .map(|(_, _, body)| {
                let hash = Sha256::digest(body.as_bytes());
                format!("\"{}\"", hex::encode(&hash[..8]))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_served_with_their_type_and_a_304_when_the_browser_has_them() {
        let first = file("app.js", &HeaderMap::new());
        assert_eq!(first.status(), StatusCode::OK);
        assert!(
            first.headers()[header::CONTENT_TYPE]
                .to_str()
                .unwrap()
                .starts_with("text/javascript")
        );
        let etag = first.headers()[header::ETAG].clone();
        let mut headers = HeaderMap::new();
        headers.insert(header::IF_NONE_MATCH, etag);
        assert_eq!(file("app.js", &headers).status(), StatusCode::NOT_MODIFIED);
        // Another file's tag is not this one's.
        assert_eq!(file("chat.js", &headers).status(), StatusCode::OK);
        assert_eq!(
            file("../Cargo.toml", &HeaderMap::new()).status(),
            StatusCode::NOT_FOUND
        );
    }

    /// Every module the page imports is one the server has.
    #[test]
    fn every_import_is_served() {
        for (name, _, body) in FILES {
            for line in body.lines() {
                let Some(target) = line
                    .split(" from \"./")
                    .nth(1)
                    .or_else(|| line.split("src=\"/ui/").nth(1))
                    .or_else(|| line.split("href=\"/ui/").nth(1))
                else {
                    continue;
                };
                let target = target.split('"').next().unwrap_or_default();
                assert!(
                    FILES.iter().any(|(n, _, _)| *n == target),
                    "{name} loads {target}, which is not served"
                );
            }
        }
    }
}
