//! Remote backends: a model served by vLLM, Ollama, OpenAI (or another plugboard) instead of
//! the local engine. plugboard stays the tool-calling layer in front of them:
//!
//! - in `raw` mode the model's adapter renders the prompt, the backend only continues it, and
//!   the adapter's stream parser reads the streamed text — the same path as local inference;
//! - in `chat` mode the backend renders and parses; its tool calls are still checked against
//!   the offered tools' schemas before a client sees them.
//!
//! ```toml
//! [[backends]]
//! name = "gpu"
//! kind = "vllm"                      # openai | ollama | vllm
//! urls = ["http://10.0.0.5:8000/v1", "http://10.0.0.6:8000/v1"]   # replicas, used in turn
//! api_key_env = "GPU_API_KEY"        # the key's variable; the key is never in this file
//! timeouts = { connect = 5, first_token = 120, idle = 60, total = 600 }   # seconds
//! cooldown = { failures = 3, window = 30, duration = 30 }  # N failures in a window → out
//! ```
//!
//! A backend's replicas are tried in turn; one that fails before the answer starts (cannot be
//! reached, `429`/`5xx`, a timeout, not an event stream) is skipped for the next, and one that
//! fails `failures` times within `window` seconds — or says `Retry-After` — is left out until
//! its time is up. Once an answer has started nothing is retried: what went wrong arrives
//! in-band.
//!
//! Long for one reason: replicas, health, `Retry-After` and the reading of an answer's start
//! are one state machine, kept together; the wire shapes of each backend kind are in
//! `wire.rs`, a remote model's chat template in `template.rs`.

mod template;
pub(crate) mod wire;

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

use crate::registry::Trigger;
pub use template::RemoteTemplate;
pub(crate) use template::defuse_control_tokens;
pub use wire::{Format, RemoteDone, RemoteEvent, RemoteInput, RemoteSampling, RemoteUsage};
use wire::{Lines, Reader, WireError, clip, error_message};

/// Which protocol a backend speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// Any OpenAI-compatible server (standard fields only).
    Openai,
    /// Ollama's own API (`/api/generate`, `/api/chat`).
    Ollama,
    /// vLLM, or another plugboard: OpenAI's API with vLLM's extensions.
    Vllm,
}

impl BackendKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BackendKind::Openai => "openai",
            BackendKind::Ollama => "ollama",
            BackendKind::Vllm => "vllm",
        }
    }
}

/// Who reads the model's output for tool calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The backend generates text from plugboard's rendered prompt; plugboard's adapter parses.
    Raw,
    /// The backend renders and parses; plugboard checks the calls.
    #[default]
    Chat,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Chat => "chat",
        }
    }
}

/// Timeouts, in seconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// To open a connection.
    pub connect: f64,
    /// From sending the request to the first piece of the answer (prompt processing and
    /// queueing on the backend).
    pub first_token: f64,
    /// Between two pieces of the answer.
    pub idle: f64,
    /// For the whole request.
    pub total: f64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect: 10.0,
            first_token: 120.0,
            idle: 60.0,
            total: 600.0,
        }
    }
}

/// When a replica is left out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Cooldown {
    /// Failures within `window` seconds that put a replica out...
    pub failures: u32,
    pub window: f64,
    /// ...for this many seconds.
    pub duration: f64,
}

impl Default for Cooldown {
    fn default() -> Self {
        Cooldown {
            failures: 3,
            window: 30.0,
            duration: 30.0,
        }
    }
}

/// One declared backend (`[[backends]]` in the config file).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendDecl {
    pub name: String,
    pub kind: BackendKind,
    /// Base URLs of the replicas. For OpenAI-style kinds a URL without a trailing `/v1` gets
    /// one.
    pub urls: Vec<String>,
    /// The environment variable that holds the API key, sent as a bearer token.
    #[serde(default)]
    pub api_key_env: Option<String>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub cooldown: Cooldown,
}

/// Why a backend did not answer.
#[derive(Debug, thiserror::Error)]
pub enum BackendError {
    #[error("backend '{backend}' cannot be reached at {url}: {reason}")]
    Unreachable {
        backend: String,
        url: String,
        reason: String,
    },
    #[error("backend '{backend}' timed out ({what}, {seconds} s)")]
    Timeout {
        backend: String,
        what: &'static str,
        seconds: f64,
    },
    #[error("backend '{backend}' is overloaded (status {status})")]
    Overloaded {
        backend: String,
        status: u16,
        retry_after: Option<Duration>,
    },
    #[error("backend '{backend}': every replica is cooling down after failures")]
    CoolingDown { backend: String },
    #[error("backend '{backend}' refused the prompt as too long: {message}")]
    ContextOverflow { backend: String, message: String },
    #[error("backend '{backend}' answered {status}: {message}")]
    Status {
        backend: String,
        status: u16,
        message: String,
    },
    #[error("backend '{backend}' reported an error: {message}")]
    InBand { backend: String, message: String },
    #[error("backend '{backend}' sent something unreadable: {reason}")]
    Protocol { backend: String, reason: String },
    #[error(
        "backend '{backend}' needs an API key in the environment variable {variable}, which is not set"
    )]
    MissingKey { backend: String, variable: String },
}

impl BackendError {
    /// Whether the next replica may do better.
    fn retryable(&self) -> bool {
        match self {
            BackendError::Unreachable { .. }
            | BackendError::Overloaded { .. }
            | BackendError::Protocol { .. } => true,
            BackendError::Timeout { what, .. } => *what != "total",
            BackendError::Status { status, .. } => *status >= 500,
            _ => false,
        }
    }

    /// The fallback trigger this error is (`fallback_on`).
    pub fn trigger(&self) -> Trigger {
        match self {
            BackendError::Timeout { .. } => Trigger::Timeout,
            BackendError::Overloaded { .. } | BackendError::CoolingDown { .. } => {
                Trigger::Overloaded
            }
            BackendError::ContextOverflow { .. } => Trigger::ContextOverflow,
            _ => Trigger::Error,
        }
    }
}

/// Health of one replica.
#[derive(Debug, Default)]
struct Health {
    failures: VecDeque<Instant>,
    out_until: Option<Instant>,
}

struct Replica {
    url: String,
    /// The URL without credentials, for messages and logs.
    shown: String,
    health: Mutex<Health>,
}

impl Replica {
    fn out(&self, now: Instant) -> bool {
        self.health
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .out_until
            .is_some_and(|until| until > now)
    }

    fn failed(&self, cooldown: &Cooldown, retry_after: Option<Duration>) {
        let now = Instant::now();
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        let window = seconds(cooldown.window);
        health.failures.push_back(now);
        while health
            .failures
            .front()
            .is_some_and(|t| now.duration_since(*t) > window)
        {
            health.failures.pop_front();
        }
        let mut until = retry_after.map(|d| now + d);
        if cooldown.failures > 0 && health.failures.len() >= cooldown.failures as usize {
            health.failures.clear();
            let cooled = now + seconds(cooldown.duration);
            until = Some(until.map_or(cooled, |u| u.max(cooled)));
        }
        if let Some(until) = until {
            health.out_until = Some(health.out_until.map_or(until, |u| u.max(until)));
        }
    }

    fn succeeded(&self) {
        let mut health = self.health.lock().unwrap_or_else(|e| e.into_inner());
        health.failures.clear();
        health.out_until = None;
    }
}

/// A backend ready to take requests: its HTTP client and its replicas.
pub struct Backend {
    pub decl: BackendDecl,
    client: reqwest::Client,
    replicas: Vec<Replica>,
    next: AtomicUsize,
}

/// One request for a backend.
#[derive(Clone, Debug)]
pub struct RemoteCall {
    pub format: Format,
    pub body: serde_json::Value,
}

/// The frames of an answer: SSE events' data or NDJSON lines.
type Frames = Pin<Box<dyn Stream<Item = Result<String, BackendError>> + Send>>;

/// An answer that has started.
pub struct RemoteStream {
    backend: String,
    /// The replica that answers.
    pub url: String,
    frames: Frames,
    reader: Reader,
    pending: VecDeque<RemoteEvent>,
    idle: Duration,
    deadline: Instant,
    total: f64,
}

impl Backend {
    pub fn new(decl: BackendDecl) -> Result<Backend, String> {
        if decl.urls.is_empty() {
            return Err(format!("backend '{}' has no urls", decl.name));
        }
        let t = &decl.timeouts;
        let c = &decl.cooldown;
        for (what, value) in [
            ("timeouts.connect", t.connect),
            ("timeouts.first_token", t.first_token),
            ("timeouts.idle", t.idle),
            ("timeouts.total", t.total),
            ("cooldown.window", c.window),
            ("cooldown.duration", c.duration),
        ] {
            if !(value.is_finite() && (0.0..=MAX_SECONDS).contains(&value)) {
                return Err(format!(
                    "backend '{}': {what} must be between 0 and {MAX_SECONDS} seconds, not {value}",
                    decl.name
                ));
            }
        }
        let mut replicas = Vec::new();
        for url in &decl.urls {
            let parsed = reqwest::Url::parse(url)
                .map_err(|e| format!("backend '{}': url '{url}': {e}", decl.name))?;
            if !matches!(parsed.scheme(), "http" | "https") {
                return Err(format!(
                    "backend '{}': url '{url}' is not http or https",
                    decl.name
                ));
            }
            let mut base = url.trim_end_matches('/').to_string();
            if decl.kind != BackendKind::Ollama && !base.ends_with("/v1") {
                base.push_str("/v1");
            }
            // Credentials written into a URL are used, never shown.
            let mut shown = reqwest::Url::parse(&base).expect("parsed above");
            let _ = shown.set_username("");
            let _ = shown.set_password(None);
            replicas.push(Replica {
                url: base,
                shown: shown.to_string().trim_end_matches('/').to_string(),
                health: Mutex::new(Health::default()),
            });
        }
        let client = reqwest::Client::builder()
            .connect_timeout(seconds(decl.timeouts.connect))
            .build()
            .map_err(|e| format!("backend '{}': {e}", decl.name))?;
        Ok(Backend {
            decl,
            client,
            replicas,
            next: AtomicUsize::new(0),
        })
    }

    pub fn name(&self) -> &str {
        &self.decl.name
    }

    fn key(&self) -> Result<Option<String>, BackendError> {
        let Some(variable) = &self.decl.api_key_env else {
            return Ok(None);
        };
        match std::env::var(variable) {
            Ok(key) if !key.is_empty() => Ok(Some(key)),
            _ => Err(BackendError::MissingKey {
                backend: self.decl.name.clone(),
                variable: variable.clone(),
            }),
        }
    }

    /// The replicas to try, in turn from the next one, leaving out those cooling down.
    fn order(&self) -> Vec<usize> {
        let n = self.replicas.len();
        let start = self.next.fetch_add(1, Ordering::Relaxed) % n;
        let now = Instant::now();
        (0..n)
            .map(|i| (start + i) % n)
            .filter(|i| !self.replicas[*i].out(now))
            .collect()
    }

    /// Sends a request and waits for the answer to start, trying the replicas in turn.
    pub async fn start(&self, call: &RemoteCall) -> Result<RemoteStream, BackendError> {
        let key = self.key()?;
        let order = self.order();
        if order.is_empty() {
            return Err(BackendError::CoolingDown {
                backend: self.decl.name.clone(),
            });
        }
        // One deadline for the whole request, however many replicas it tries.
        let deadline = Instant::now() + seconds(self.decl.timeouts.total);
        let mut last = None;
        for i in order {
            let replica = &self.replicas[i];
            let started = Instant::now();
            let outcome = self
                .try_replica(replica, call, key.as_deref(), deadline)
                .await;
            let status = match &outcome {
                Ok(_) => "ok".to_string(),
                Err(BackendError::Status { status, .. })
                | Err(BackendError::Overloaded { status, .. }) => status.to_string(),
                Err(e) => e.trigger().as_str().to_string(),
            };
            metrics::counter!("plugboard_backend_requests_total", "backend" => self.decl.name.clone(), "status" => status)
                .increment(1);
            match outcome {
                Ok(stream) => {
                    metrics::histogram!("plugboard_backend_time_to_first_token_seconds", "backend" => self.decl.name.clone())
                        .record(started.elapsed().as_secs_f64());
                    replica.succeeded();
                    return Ok(stream);
                }
                Err(e) => {
                    tracing::warn!(backend = %self.decl.name, url = %replica.shown, "{e}");
                    if e.retryable() {
                        let retry_after = match &e {
                            BackendError::Overloaded { retry_after, .. } => *retry_after,
                            _ => None,
                        };
                        replica.failed(&self.decl.cooldown, retry_after);
                        last = Some(e);
                    } else {
                        return Err(e);
                    }
                }
            }
        }
        Err(last.expect("at least one replica was tried"))
    }

    async fn try_replica(
        &self,
        replica: &Replica,
        call: &RemoteCall,
        key: Option<&str>,
        deadline: Instant,
    ) -> Result<RemoteStream, BackendError> {
        let name = &self.decl.name;
        let t = &self.decl.timeouts;
        let first = (Instant::now() + seconds(t.first_token)).min(deadline);
        let url = format!("{}{}", replica.url, call.format.path());
        let mut request = self.client.post(&url).json(&call.body);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        let timeout = |what| BackendError::Timeout {
            backend: name.clone(),
            what,
            seconds: if what == "total" {
                t.total
            } else {
                t.first_token
            },
        };
        let response = match tokio::time::timeout_at(first, request.send()).await {
            Err(_) => {
                return Err(timeout(if first < deadline {
                    "first token"
                } else {
                    "total"
                }));
            }
            Ok(Err(e)) => {
                return Err(BackendError::Unreachable {
                    backend: name.clone(),
                    url: replica.shown.clone(),
                    reason: error_chain(&e).replace(&replica.url, &replica.shown),
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if !status.is_success() {
            return Err(
                match tokio::time::timeout_at(deadline, status_error(name, response)).await {
                    Ok(error) => error,
                    Err(_) => timeout("total"),
                },
            );
        }
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_ascii_lowercase();
        if content_type.starts_with("text/html") {
            return Err(BackendError::Protocol {
                backend: name.clone(),
                reason: format!("it answered HTML ({content_type}), not a stream"),
            });
        }
        let mut stream = RemoteStream {
            backend: name.clone(),
            url: replica.shown.clone(),
            frames: frames(name, call.format, response.bytes_stream()),
            reader: Reader::new(call.format),
            pending: VecDeque::new(),
            idle: seconds(t.idle),
            deadline,
            total: t.total,
        };
        // The answer has started once it says something.
        match tokio::time::timeout_at(first, stream.fill()).await {
            Err(_) => Err(timeout(if first < deadline {
                "first token"
            } else {
                "total"
            })),
            Ok(Err(e)) => Err(e),
            Ok(Ok(())) => Ok(stream),
        }
    }
}

/// Longest time a setting may give, in seconds (about 11 days).
const MAX_SECONDS: f64 = 1e6;

/// A validated setting as a duration (a zero one is a millisecond: no wait is instant).
fn seconds(value: f64) -> Duration {
    Duration::from_secs_f64(value.clamp(0.001, MAX_SECONDS))
}

/// The whole chain of an HTTP client error (reqwest's top level says only "error sending
/// request").
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// A non-2xx answer as an error, with the backend's message where it gave one.
async fn status_error(backend: &str, response: reqwest::Response) -> BackendError {
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s >= 0.0)
        .map(|s| Duration::from_secs_f64(s.min(3600.0)));
    let is_html = response
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/html"));
    // Bounded: an error page is not worth more than its first 64 KiB.
    let mut body = Vec::new();
    let mut chunks = response.bytes_stream();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(Duration::from_secs(5), chunks.next()).await
    {
        body.extend_from_slice(&chunk);
        if body.len() > 64 << 10 {
            break;
        }
    }
    let text = String::from_utf8_lossy(&body);
    let message = serde_json::from_str::<serde_json::Value>(&text)
        .ok()
        .and_then(|v| error_message(&v))
        .unwrap_or_else(|| {
            if is_html {
                "an HTML page".to_string()
            } else {
                clip(&text)
            }
        });
    let backend = backend.to_string();
    if status == 401 || status == 403 {
        // The body may quote the key back (OpenAI shows a masked part of it).
        return BackendError::Status {
            backend,
            status,
            message: "the backend refused the API key".into(),
        };
    }
    if status == 429 || status == 503 {
        return BackendError::Overloaded {
            backend,
            status,
            retry_after,
        };
    }
    let lower = message.to_ascii_lowercase();
    if status == 400 && (lower.contains("context length") || lower.contains("context window")) {
        return BackendError::ContextOverflow { backend, message };
    }
    BackendError::Status {
        backend,
        status,
        message,
    }
}

/// The frames of a streamed answer: SSE events' data, or NDJSON lines.
fn frames<S, B, E>(backend: &str, format: Format, bytes: S) -> Frames
where
    S: Stream<Item = Result<B, E>> + Send + Unpin + 'static,
    B: AsRef<[u8]> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let backend = backend.to_string();
    if format.is_sse() {
        return Box::pin(bytes.eventsource().map(move |event| match event {
            Ok(event) if event.event == "error" => Err(BackendError::InBand {
                backend: backend.clone(),
                message: event.data,
            }),
            Ok(event) => Ok(event.data),
            Err(e) => Err(BackendError::Protocol {
                backend: backend.clone(),
                reason: format!("the stream broke: {e}"),
            }),
        }));
    }
    let state = (bytes, Lines::default(), VecDeque::new(), false);
    Box::pin(futures::stream::unfold(
        state,
        move |(mut bytes, mut lines, mut ready, mut ended)| {
            let backend = backend.clone();
            async move {
                loop {
                    if let Some(line) = ready.pop_front() {
                        return Some((Ok(line), (bytes, lines, ready, ended)));
                    }
                    if ended {
                        return None;
                    }
                    match bytes.next().await {
                        Some(Ok(chunk)) => ready.extend(lines.push(chunk.as_ref())),
                        Some(Err(e)) => {
                            ended = true;
                            let error = BackendError::Protocol {
                                backend,
                                reason: format!("the stream broke: {}", error_chain(&e)),
                            };
                            return Some((Err(error), (bytes, lines, ready, ended)));
                        }
                        None => {
                            ended = true;
                            ready.extend(lines.finish());
                        }
                    }
                }
            }
        },
    ))
}

impl RemoteStream {
    pub fn backend(&self) -> &str {
        &self.backend
    }

    /// Reads frames until there is an event to give (or the answer ended).
    async fn fill(&mut self) -> Result<(), BackendError> {
        while self.pending.is_empty() && !self.reader.finished() {
            let events = match self.frames.next().await {
                Some(Ok(data)) => self.reader.frame(&data),
                Some(Err(e)) => return Err(e),
                None => self.reader.end(),
            };
            match events {
                Ok(events) => self.pending.extend(events),
                Err(WireError::InBand(message)) => {
                    return Err(BackendError::InBand {
                        backend: self.backend.clone(),
                        message,
                    });
                }
                Err(WireError::Malformed(reason)) => {
                    return Err(BackendError::Protocol {
                        backend: self.backend.clone(),
                        reason,
                    });
                }
            }
        }
        Ok(())
    }

    /// The next event; `None` after the answer's end.
    pub async fn next(&mut self) -> Option<Result<RemoteEvent, BackendError>> {
        if self.pending.is_empty() && !self.reader.finished() {
            let idle = (Instant::now() + self.idle).min(self.deadline);
            match tokio::time::timeout_at(idle, self.fill()).await {
                Err(_) => {
                    let total = idle == self.deadline;
                    return Some(Err(BackendError::Timeout {
                        backend: self.backend.clone(),
                        what: if total { "total" } else { "idle" },
                        seconds: if total {
                            self.total
                        } else {
                            self.idle.as_secs_f64()
                        },
                    }));
                }
                Ok(Err(e)) => return Some(Err(e)),
                Ok(Ok(())) => {}
            }
        }
        self.pending.pop_front().map(Ok)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(urls: &[&str], cooldown: Cooldown) -> Backend {
        Backend::new(BackendDecl {
            name: "b".into(),
            kind: BackendKind::Vllm,
            urls: urls.iter().map(|u| u.to_string()).collect(),
            api_key_env: None,
            timeouts: Timeouts::default(),
            cooldown,
        })
        .expect("valid")
    }

    #[test]
    fn urls_get_v1_except_for_ollama_and_bad_ones_are_refused() {
        let b = backend(&["http://a:8000", "http://b:8000/v1/"], Cooldown::default());
        assert_eq!(b.replicas[0].url, "http://a:8000/v1");
        assert_eq!(b.replicas[1].url, "http://b:8000/v1");
        let error = Backend::new(BackendDecl {
            urls: vec!["ftp://x".into()],
            ..b.decl.clone()
        })
        .err()
        .expect("refused");
        assert!(error.contains("not http"), "{error}");
    }

    /// Replicas are used in turn; one that fails `failures` times in its window is left out
    /// for `duration`, then comes back (tokio's paused clock).
    #[tokio::test(start_paused = true)]
    async fn a_failing_replica_cools_down_and_recovers() {
        let cooldown = Cooldown {
            failures: 2,
            window: 10.0,
            duration: 30.0,
        };
        let b = backend(&["http://a", "http://b"], cooldown.clone());
        assert_eq!(b.order(), vec![0, 1]);
        assert_eq!(b.order(), vec![1, 0]);
        b.replicas[0].failed(&cooldown, None);
        assert_eq!(b.order().len(), 2, "one failure is not enough");
        // A second failure outside the window does not count with the first.
        tokio::time::advance(Duration::from_secs(11)).await;
        b.replicas[0].failed(&cooldown, None);
        assert_eq!(b.order().len(), 2);
        b.replicas[0].failed(&cooldown, None);
        assert!(!b.order().contains(&0), "two failures in the window: out");
        tokio::time::advance(Duration::from_secs(29)).await;
        assert!(!b.order().contains(&0));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(b.order().contains(&0), "back after its cooldown");
        // Retry-After puts a replica out for that long, at once.
        b.replicas[1].failed(&cooldown, Some(Duration::from_secs(5)));
        assert_eq!(b.order(), vec![0]);
        tokio::time::advance(Duration::from_secs(6)).await;
        assert_eq!(b.order().len(), 2);
        // A success forgets past failures.
        b.replicas[0].failed(&cooldown, None);
        b.replicas[0].succeeded();
        b.replicas[0].failed(&cooldown, None);
        assert_eq!(b.order().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn every_replica_cooling_down_is_an_overload_without_a_request() {
        let cooldown = Cooldown {
            failures: 1,
            window: 10.0,
            duration: 30.0,
        };
        let b = backend(&["http://a"], cooldown.clone());
        b.replicas[0].failed(&cooldown, None);
        let call = RemoteCall {
            format: Format::Completion,
            body: serde_json::json!({}),
        };
        let error = b.start(&call).await.err().expect("no replica");
        assert!(matches!(error, BackendError::CoolingDown { .. }), "{error}");
        assert_eq!(error.trigger(), Trigger::Overloaded);
    }

    /// Every recorded stream (tests/backends/) reads to the same events however its bytes
    /// are split on the way.
    #[tokio::test]
    async fn recorded_streams_read_the_same_at_every_split() {
        let recorded = [
            (
                Format::Completion,
                include_str!("../../tests/backends/vllm-completions.sse"),
            ),
            (
                Format::Chat,
                include_str!("../../tests/backends/vllm-chat.sse"),
            ),
            (
                Format::Chat,
                include_str!("../../tests/backends/openai-chat.sse"),
            ),
            (
                Format::OllamaGenerate,
                include_str!("../../tests/backends/ollama-generate.ndjson"),
            ),
            (
                Format::OllamaChat,
                include_str!("../../tests/backends/ollama-chat.ndjson"),
            ),
        ];
        for (format, text) in recorded {
            let mut whole = None;
            for split in [usize::MAX, 1, 2, 3, 5, 8] {
                let chunks: Vec<Result<Vec<u8>, std::io::Error>> = text
                    .as_bytes()
                    .chunks(split.min(text.len()))
                    .map(|c| Ok(c.to_vec()))
                    .collect();
                let mut stream = RemoteStream {
                    backend: "b".into(),
                    url: String::new(),
                    frames: frames("b", format, futures::stream::iter(chunks)),
                    reader: Reader::new(format),
                    pending: VecDeque::new(),
                    idle: Duration::from_secs(5),
                    deadline: Instant::now() + Duration::from_secs(5),
                    total: 5.0,
                };
                let mut events = Vec::new();
                while let Some(event) = stream.next().await {
                    events.push(event.unwrap_or_else(|e| panic!("{format:?} at {split}: {e}")));
                }
                assert!(
                    matches!(events.last(), Some(RemoteEvent::Done(_))),
                    "{format:?} ends: {events:?}"
                );
                // Text may arrive in other pieces; joined, it is the same.
                let joined = join_text(&events);
                match &whole {
                    None => whole = Some(joined),
                    Some(first) => assert_eq!(&joined, first, "{format:?} split at {split}"),
                }
            }
        }
    }

    /// Events with consecutive text and reasoning pieces joined.
    fn join_text(events: &[RemoteEvent]) -> Vec<RemoteEvent> {
        let mut out: Vec<RemoteEvent> = Vec::new();
        for event in events {
            match (out.last_mut(), event) {
                (Some(RemoteEvent::Text(a)), RemoteEvent::Text(b))
                | (Some(RemoteEvent::Reasoning(a)), RemoteEvent::Reasoning(b)) => a.push_str(b),
                _ => out.push(event.clone()),
            }
        }
        out
    }

    #[tokio::test]
    async fn a_missing_key_is_named_and_nothing_is_sent() {
        let b = Backend::new(BackendDecl {
            api_key_env: Some("PLUGBOARD_TEST_KEY_THAT_IS_NOT_SET".into()),
            ..backend(&["http://127.0.0.1:9"], Cooldown::default()).decl
        })
        .expect("valid");
        let call = RemoteCall {
            format: Format::Chat,
            body: serde_json::json!({}),
        };
        let error = b.start(&call).await.err().expect("no key");
        assert!(
            error
                .to_string()
                .contains("PLUGBOARD_TEST_KEY_THAT_IS_NOT_SET"),
            "{error}"
        );
    }
}
