//! Who may call what: API keys and their scopes, the origins a browser may call from, and the
//! host names a loopback server answers to (so that a web page cannot drive it through the
//! user's browser, by CORS or by DNS rebinding).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowHeaders, AllowOrigin, Any, CorsLayer};

use super::error::ApiError;
use crate::keys::{Keys, Scope, fingerprint};

/// The access rules of one server.
#[derive(Clone, Debug, Default)]
pub struct Access {
    pub keys: Keys,
    /// Origins allowed besides loopback ones and the server's own (`*`: any).
    pub allowed_origins: Vec<String>,
    /// The server listens on loopback only: requests must name a loopback host (or an allowed
    /// origin's), which defeats DNS rebinding.
    pub loopback_only: bool,
    /// `/metrics` needs an admin key.
    pub protect_metrics: bool,
}

/// The caller of a request, once its key is checked (in the request's extensions).
#[derive(Clone, Debug)]
pub struct Caller {
    /// The key's name; `None` when the server asks for no key.
    pub key: Option<String>,
    /// What the route needs; `None` for public ones.
    pub scope: Option<Scope>,
}

impl Access {
    /// The scope a route needs; `None` for the public ones.
    pub fn scope_of(&self, path: &str) -> Option<Scope> {
        match path {
            "/" | "/health" | "/api/version" | "/openapi.json" => None,
            "/metrics" => self.protect_metrics.then_some(Scope::Admin),
            "/apply-template" | "/tokenize" | "/detokenize" | "/v1/events" | "/v1/models/pull"
            | "/api/pull" | "/api/delete" | "/api/copy" => Some(Scope::Admin),
            _ if path.starts_with("/ui/") => None,
            _ if path.starts_with("/v1/adapters") => Some(Scope::Admin),
            _ => Some(Scope::Inference),
        }
    }

    /// Whether a browser page of this origin may call the server: loopback pages, the server's
    /// own page (its origin names the host the request was sent to) and the allowed ones.
    pub fn origin_allowed(&self, origin: &str, host: Option<&str>) -> bool {
        let origin = origin.trim_end_matches('/');
        if self
            .allowed_origins
            .iter()
            .any(|o| o == "*" || o.trim_end_matches('/').eq_ignore_ascii_case(origin))
        {
            return true;
        }
        let Some((scheme, authority)) = origin.split_once("://") else {
            return false;
        };
        if scheme != "http" && scheme != "https" {
            return false;
        }
        is_loopback(hostname(authority))
            || host.is_some_and(|host| host.eq_ignore_ascii_case(authority))
    }

    /// Whether a request naming this host is answered (against DNS rebinding): on loopback, a
    /// loopback name or an allowed origin's; on another address with no key, also an IP
    /// address; with keys there, any.
    pub fn host_allowed(&self, host: Option<&str>) -> bool {
        // With keys on a non-loopback address, a rebound name gets nowhere without a key.
        if !self.loopback_only && !self.keys.is_empty() {
            return true;
        }
        let Some(host) = host else { return true };
        let name = hostname(host);
        // A server reachable from elsewhere with no key is called by its address (or an
        // allowed origin's name); any other name may be an attacker's, rebound to it.
        (!self.loopback_only && name.parse::<IpAddr>().is_ok())
            || is_loopback(name)
            || self.allowed_origins.iter().any(|o| {
                o == "*"
                    || o.split_once("://")
                        .is_some_and(|(_, a)| hostname(a).eq_ignore_ascii_case(hostname(host)))
            })
    }

    /// The CORS layer: what browsers are told of the same rules.
    pub fn cors(self: &Arc<Self>) -> CorsLayer {
        let access = Arc::clone(self);
        CorsLayer::new()
            .allow_origin(AllowOrigin::predicate(move |origin, parts| {
                let host = parts
                    .headers
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok());
                origin
                    .to_str()
                    .is_ok_and(|origin| access.origin_allowed(origin, host))
            }))
            .allow_methods(Any)
            // Mirrored, not `*`: a wildcard never covers `Authorization`, and a page of an
            // allowed origin must be able to send its key.
            .allow_headers(AllowHeaders::mirror_request())
            .expose_headers(Any)
    }
}

/// `host:port`, `[v6]:port` or `host` → the host alone.
fn hostname(authority: &str) -> &str {
    if let Some(rest) = authority.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    authority.split(':').next().unwrap_or(authority)
}

fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Query parameters that would carry a key into logs and browser histories.
const KEY_PARAMETERS: &[&str] = &["api_key", "apikey", "key", "token", "access_token"];

/// The middleware: host and origin first (a page must not drive the server even where no key
/// is asked for), then the key and its scope.
pub async fn guard(State(access): State<Arc<Access>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    // In the API's own shape; a 401 says which scheme to use.
    let shape = |e: ApiError| {
        let e = if path.starts_with("/api/") {
            e.ollama()
        } else {
            e
        };
        let unauthorized = e.status == StatusCode::UNAUTHORIZED;
        let mut response = e.into_response();
        if unauthorized {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    };
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_string);
    if !access.host_allowed(host.as_deref()) {
        return shape(refused(
            StatusCode::FORBIDDEN,
            "host_not_allowed",
            format!(
                "this server answers to loopback names only, not '{}'; add its origin with --allowed-origins",
                host.unwrap_or_default()
            ),
        ));
    }
    if let Some(origin) = req.headers().get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !access.origin_allowed(origin, host.as_deref()) {
            return shape(refused(
                StatusCode::FORBIDDEN,
                "origin_not_allowed",
                format!(
                    "pages of the origin '{origin}' may not call this server; allow it with --allowed-origins"
                ),
            ));
        }
    }
    let scope = access.scope_of(&path);
    if access.keys.is_empty() || scope.is_none() || req.method() == Method::OPTIONS {
        req.extensions_mut().insert(Caller { key: None, scope });
        return next.run(req).await;
    }
    let scope = scope.unwrap_or(Scope::Inference);
    if let Some(query) = req.uri().query()
        && query.split('&').any(|pair| {
            let name = pair.split('=').next().unwrap_or("");
            KEY_PARAMETERS.iter().any(|k| k.eq_ignore_ascii_case(name))
        })
    {
        return shape(unauthorized(
            "key_in_query",
            "keys are not taken from the query string (it ends up in logs); send the header Authorization: Bearer KEY",
        ));
    }
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|h| h.to_str().ok())
        .and_then(|h| {
            let (scheme, token) = h.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    let Some(presented) = presented else {
        return shape(unauthorized(
            "missing_api_key",
            "this server needs an API key: send the header Authorization: Bearer KEY",
        ));
    };
    let Some(key) = access.keys.find(presented) else {
        tracing::warn!(key = %fingerprint(presented), %path, "a request with an unknown key was refused");
        return shape(unauthorized(
            "invalid_api_key",
            "the API key is not one this server accepts",
        ));
    };
    if !key.allows(scope) {
        metrics::counter!("plugboard_auth_refusals_total", "reason" => "insufficient_scope")
            .increment(1);
        tracing::warn!(key = %key.name, %path, "a key without the {} scope was refused", scope.as_str());
        return shape(refused(
            StatusCode::FORBIDDEN,
            "insufficient_scope",
            format!(
                "the key '{}' may not call {path}: it needs the {} scope",
                key.name,
                scope.as_str()
            ),
        ));
    }
    metrics::counter!("plugboard_key_requests_total", "key" => key.name.clone()).increment(1);
    req.extensions_mut().insert(Caller {
        key: Some(key.name.clone()),
        scope: Some(scope),
    });
    next.run(req).await
}

fn refused(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    metrics::counter!("plugboard_auth_refusals_total", "reason" => code).increment(1);
    ApiError::new(status, "invalid_request_error", message).code(code)
}

fn unauthorized(code: &'static str, message: &str) -> ApiError {
    refused(StatusCode::UNAUTHORIZED, code, message)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_pages_and_the_servers_own_page_may_call_it_others_may_not() {
        let access = Access::default();
        let host = Some("127.0.0.1:8080");
        for allowed in [
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "http://[::1]:5173",
            "https://127.0.0.5",
        ] {
            assert!(access.origin_allowed(allowed, host), "{allowed}");
        }
        for refused in [
            "http://evil.example",
            "null",
            "file://",
            "http://localhost.evil.example",
        ] {
            assert!(!access.origin_allowed(refused, host), "{refused}");
        }
        // Served on a LAN name, its own page may call it.
        assert!(access.origin_allowed("http://box.lan:8080", Some("box.lan:8080")));
        let wide = Access {
            allowed_origins: vec!["https://app.example.com".into()],
            ..Access::default()
        };
        assert!(wide.origin_allowed("https://app.example.com", host));
        assert!(!wide.origin_allowed("https://other.example.com", host));
    }

    #[test]
    fn a_loopback_server_answers_loopback_names_only() {
        let access = Access {
            loopback_only: true,
            ..Access::default()
        };
        assert!(access.host_allowed(Some("127.0.0.1:8080")));
        assert!(access.host_allowed(Some("localhost:8080")));
        assert!(access.host_allowed(Some("[::1]:8080")));
        // DNS rebinding: a name of the attacker's that resolves to 127.0.0.1.
        assert!(!access.host_allowed(Some("rebind.evil.example:8080")));
        // Reachable from elsewhere with no key: addresses, not names (unless allowed).
        let open = Access::default();
        assert!(open.host_allowed(Some("192.168.1.5:8080")));
        assert!(!open.host_allowed(Some("rebind.evil.example:8080")));
        let named = Access {
            allowed_origins: vec!["http://box.lan:8080".into()],
            ..Access::default()
        };
        assert!(named.host_allowed(Some("box.lan:8080")));
    }

    #[test]
    fn admin_routes_need_the_admin_scope_and_the_page_none() {
        let access = Access::default();
        assert_eq!(access.scope_of("/"), None);
        assert_eq!(access.scope_of("/ui/app.js"), None);
        assert_eq!(access.scope_of("/health"), None);
        assert_eq!(access.scope_of("/metrics"), None);
        assert_eq!(
            access.scope_of("/v1/chat/completions"),
            Some(Scope::Inference)
        );
        assert_eq!(access.scope_of("/api/chat"), Some(Scope::Inference));
        assert_eq!(access.scope_of("/v1/models"), Some(Scope::Inference));
        for admin in [
            "/v1/adapters",
            "/v1/adapters/x/parse",
            "/api/pull",
            "/api/delete",
            "/tokenize",
            "/v1/events",
        ] {
            assert_eq!(access.scope_of(admin), Some(Scope::Admin), "{admin}");
        }
        let protected = Access {
            protect_metrics: true,
            ..Access::default()
        };
        assert_eq!(protected.scope_of("/metrics"), Some(Scope::Admin));
    }
}
