//! Requests in flight: counted (a gauge that returns to 0), limited per key (concurrent
//! requests and a rate), held to a time limit, and, when the server stops, given until a
//! deadline to finish. A request past its time or the deadline is not cut: a stream gets a
//! last error event in its own format (SSE or NDJSON), a whole answer a 503 or 504.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::access::Caller;
use super::error::ApiError;
use crate::keys::Scope;

/// Where the server is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// Stopping: no new requests; those in flight may finish.
    Draining,
    /// The grace period is over: what is still in flight ends now.
    Ending,
}

/// Limits on callers, per key (the keyless caller counts as one key).
#[derive(Clone, Debug, Default)]
pub struct CallerLimits {
    /// Inference requests one key may have in flight at once.
    pub concurrent: Option<usize>,
    /// Inference requests one key may start, as a rate.
    pub rate: Option<Rate>,
    /// The longest an inference request may take.
    pub request_timeout: Option<Duration>,
}

/// `N/s`, `N/min` or `N/h`: so many requests per period, in bursts of up to N.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub requests: NonZeroU32,
    pub per: Duration,
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Rate, String> {
        let bad = || format!("'{text}' is not a rate like 60/min, 10/s or 1000/h");
        let (count, unit) = text.split_once('/').ok_or_else(bad)?;
        let requests = count.trim().parse::<NonZeroU32>().map_err(|_| bad())?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Rate { requests, per })
    }
}

/// The state the middleware keeps.
pub struct Inflight {
    limits: CallerLimits,
    rate: Option<DefaultKeyedRateLimiter<String>>,
    slots: Mutex<HashMap<String, Arc<Semaphore>>>,
    phase: watch::Sender<Phase>,
}

impl Inflight {
    pub fn new(limits: CallerLimits) -> Inflight {
        let rate = limits.rate.map(|rate| {
            let period = rate.per / rate.requests.get();
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(rate.requests))
                .allow_burst(rate.requests);
            RateLimiter::keyed(quota)
        });
        Inflight {
            limits,
            rate,
            slots: Mutex::new(HashMap::new()),
            phase: watch::channel(Phase::Serving).0,
        }
    }

    pub fn phase(&self) -> Phase {
        *self.phase.borrow()
    }

    /// Stop taking requests; after `grace`, end those still in flight.
    pub fn drain(self: &Arc<Self>, grace: Duration) {
        self.phase.send_replace(Phase::Draining);
        let this = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            this.phase.send_replace(Phase::Ending);
        });
    }

    /// Resolves once the grace period is over.
    pub async fn ended(&self) {
        self.reached(Phase::Ending).await;
    }

    /// Resolves once the server is in `phase` or past it.
    async fn reached(&self, phase: Phase) {
        let rank = |p: Phase| match p {
            Phase::Serving => 0,
            Phase::Draining => 1,
            Phase::Ending => 2,
        };
        let mut now = self.phase.subscribe();
        let _ = now.wait_for(|p| rank(*p) >= rank(phase)).await;
    }

    /// A slot for one more request of this key, if it has one free.
    fn slot(&self, key: &str) -> Result<Option<OwnedSemaphorePermit>, usize> {
        let Some(most) = self.limits.concurrent else {
            return Ok(None);
        };
        let semaphore = {
            let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(
                slots
                    .entry(key.to_string())
                    .or_insert_with(|| Arc::new(Semaphore::new(most))),
            )
        };
        semaphore.try_acquire_owned().map(Some).map_err(|_| most)
    }
}

/// Why a request in flight was ended early.
#[derive(Clone, Copy)]
enum Ended {
    ShuttingDown,
    TimedOut(Duration),
}

impl Ended {
    fn error(self) -> ApiError {
        match self {
            Ended::ShuttingDown => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "server_error",
                "the server is shutting down; try again",
            )
            .code("server_shutting_down"),
            Ended::TimedOut(limit) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "server_error",
                format!(
                    "the request took longer than this server's limit of {} s",
                    limit.as_secs_f32()
                ),
            )
            .code("request_timeout"),
        }
    }
}

/// Counts what is in flight for the gauge, for as long as its answer is being sent.
struct Counted;

impl Counted {
    fn new() -> Counted {
        metrics::gauge!("plugboard_requests_in_flight").increment(1.0);
        Counted
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        metrics::gauge!("plugboard_requests_in_flight").decrement(1.0);
    }
}

/// The middleware (after the access guard, which names the caller).
pub async fn track(State(inflight): State<Arc<Inflight>>, req: Request, next: Next) -> Response {
    let caller = req.extensions().get::<Caller>().cloned();
    let inference = caller
        .as_ref()
        .is_some_and(|c| c.scope == Some(Scope::Inference));
    let ollama = req.uri().path().starts_with("/api/");
    let shape = |e: ApiError| if ollama { e.ollama() } else { e };
    if inflight.phase() != Phase::Serving {
        return shape(Ended::ShuttingDown.error()).into_response();
    }
    // The public routes (the page, /health, /metrics) are not counted: a scrape would count
    // itself.
    let counted = caller
        .as_ref()
        .is_some_and(|c| c.scope.is_some())
        .then(Counted::new);
    let mut slot = None;
    let mut deadline = None;
    if inference {
        let key = caller
            .and_then(|c| c.key)
            .unwrap_or_else(|| "(no key)".into());
        // A slot first: a request refused for want of one does not spend the key's rate.
        match inflight.slot(&key) {
            Ok(permit) => slot = permit,
            Err(most) => {
                metrics::counter!("plugboard_limit_refusals_total", "limit" => "too_many_concurrent_requests")
                    .increment(1);
                return shape(
                    ApiError::new(
                        StatusCode::TOO_MANY_REQUESTS,
                        "rate_limit_error",
                        format!("the key '{key}' has {most} requests in flight, its most; wait for one to end"),
                    )
                    .code("too_many_concurrent_requests"),
                )
                .into_response();
            }
        }
        if let Some(limiter) = &inflight.rate
            && let Err(not_until) = limiter.check_key(&key)
        {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(
                &governor::clock::DefaultClock::default(),
            ));
            metrics::counter!("plugboard_limit_refusals_total", "limit" => "rate_limited")
                .increment(1);
            let mut response = shape(
                ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "rate_limit_error",
                    format!(
                        "the key '{key}' has made its requests for now; try again in {:.1} s",
                        wait.as_secs_f32()
                    ),
                )
                .code("rate_limited"),
            )
            .into_response();
            let seconds = wait.as_secs() + 1;
            if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            return response;
        }
        deadline = inflight
            .limits
            .request_timeout
            .and_then(|limit| Some((Instant::now().checked_add(limit)?, limit)));
    }
    let until_deadline = async move {
        match deadline {
            Some((at, limit)) => {
                tokio::time::sleep_until(at.into()).await;
                Ended::TimedOut(limit)
            }
            None => std::future::pending().await,
        }
    };
    // The event stream never ends by itself: it ends as soon as the server stops, so that a
    // browser left open does not hold the stop for the whole grace period.
    let ends_at = if req.uri().path() == "/v1/events" {
        Phase::Draining
    } else {
        Phase::Ending
    };
    let ending = {
        let inflight = Arc::clone(&inflight);
        async move {
            inflight.reached(ends_at).await;
            Ended::ShuttingDown
        }
    };
    let stop = Box::pin(async move {
        tokio::select! {
            why = until_deadline => why,
            why = ending => why,
        }
    });
    let mut stop = futures::FutureExt::shared(stop);
    let response = tokio::select! {
        response = next.run(req) => response,
        why = &mut stop => return shape(why.error()).into_response(),
    };
    let format = Format::of(&response);
    let (parts, body) = response.into_parts();
    if format == Format::Whole {
        // A whole answer is never cut once it has begun (it is short then); it keeps its
        // length, and the count and the key's slot are held until it is sent.
        let body = Held {
            body,
            _held: (counted, slot),
        };
        return Response::from_parts(parts, Body::new(body));
    }
    // A stream's chunks until it ends, or its last words when it must stop early; the count
    // and the key's slot are held until then.
    let chunks = body.into_data_stream();
    let body = futures::stream::unfold(
        (true, chunks, stop, (counted, slot)),
        move |(open, mut chunks, stop, held)| async move {
            if !open {
                return None;
            }
            tokio::select! {
                biased;
                next = chunks.next() => next.map(|c| (c, (true, chunks, stop, held))),
                why = stop.clone() => {
                    Some((Ok(format.last_words(why, ollama)), (false, chunks, stop, held)))
                }
            }
        },
    );
    Response::from_parts(parts, Body::from_stream(body))
}

/// A body that holds something (the in-flight count, a key's slot) until it is dropped, and
/// is otherwise the body it wraps (its length included).
struct Held<T> {
    body: Body,
    _held: T,
}

impl<T: Unpin + Send + 'static> http_body::Body for Held<T> {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        std::pin::Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// How an answer is framed, for its last words.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Sse,
    Ndjson,
    Whole,
}

impl Format {
    fn of(response: &Response) -> Format {
        let kind = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if kind.starts_with("text/event-stream") {
            Format::Sse
        } else if kind.starts_with("application/x-ndjson") {
            Format::Ndjson
        } else {
            Format::Whole
        }
    }

    /// The error that ends a stream early, in its own framing.
    fn last_words(self, why: Ended, ollama: bool) -> Bytes {
        let error = why.error();
        match self {
            Format::Sse => {
                Bytes::from(format!("data: {}\n\ndata: [DONE]\n\n", error.openai_body()))
            }
            Format::Ndjson if ollama => {
                Bytes::from(format!("{}\n", serde_json::json!({"error": error.message})))
            }
            _ => Bytes::from(format!("{}\n", error.openai_body())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_people_write_them() {
        let rate: Rate = "60/min".parse().expect("a rate");
        assert_eq!(rate.requests.get(), 60);
        assert_eq!(rate.per, Duration::from_secs(60));
        assert_eq!(
            "10/s".parse::<Rate>().expect("a rate").per,
            Duration::from_secs(1)
        );
        assert!("0/s".parse::<Rate>().is_err());
        assert!("ten/s".parse::<Rate>().is_err());
        assert!("10/day".parse::<Rate>().is_err());
    }

    #[tokio::test]
    async fn a_key_has_so_many_slots_and_gets_them_back() {
        let inflight = Inflight::new(CallerLimits {
            concurrent: Some(2),
            ..CallerLimits::default()
        });
        let first = inflight.slot("app").expect("free");
        let _second = inflight.slot("app").expect("free");
        assert_eq!(inflight.slot("app").err(), Some(2));
        assert!(inflight.slot("ops").is_ok(), "keys do not share slots");
        drop(first);
        assert!(inflight.slot("app").is_ok());
    }
}
