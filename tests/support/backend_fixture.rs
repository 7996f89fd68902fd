//! A fixture backend for the gateway tests (a test double, named as one: vLLM and Ollama
//! cannot run here, and OpenAI is not reachable). An axum server on loopback answers every
//! POST with the next queued reply — a recorded stream from `tests/backends/`, re-split into
//! pieces of a chosen size, or a fault — and records what it was sent, so that tests assert
//! what plugboard *sent* (the raw prompt, the special-token switches, `num_ctx`, the key).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;

/// What goes wrong with a reply, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// The connection is cut after this many body bytes.
    ResetAfter(usize),
    /// Nothing more comes after this many body bytes.
    StallAfter(usize),
    /// The reply waits this long before its headers.
    Delay(Duration),
}

/// One reply.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body, in the pieces it is sent in (each on its own).
    pub pieces: Vec<Vec<u8>>,
    /// Time between two pieces: a backend generating at a steady rate (the gateway
    /// benchmark). Without it, pieces follow each other at once.
    pub pace: Option<Duration>,
    pub fault: Option<Fault>,
}

impl Reply {
    /// A recorded stream (`tests/backends/NAME`), in pieces of `split` bytes.
    pub fn recorded(name: &str, split: usize) -> Reply {
        let path = super::root().join("tests/backends").join(name);
        let body =
            std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let kind = if name.ends_with(".sse") {
            "text/event-stream"
        } else {
            "application/x-ndjson"
        };
        Reply {
            status: 200,
            headers: vec![("content-type".into(), kind.into())],
            pieces: body.chunks(split.max(1)).map(<[u8]>::to_vec).collect(),
            pace: None,
            fault: None,
        }
    }

    /// An SSE stream of these `data:` payloads, one event a piece.
    pub fn sse(frames: &[String]) -> Reply {
        Reply {
            status: 200,
            headers: vec![("content-type".into(), "text/event-stream".into())],
            pieces: frames
                .iter()
                .map(|f| format!("data: {f}\n\n").into_bytes())
                .collect(),
            pace: None,
            fault: None,
        }
    }

    /// A whole (not streamed) answer.
    pub fn status(status: u16, content_type: &str, body: &str) -> Reply {
        Reply {
            status,
            headers: vec![("content-type".into(), content_type.into())],
            pieces: vec![body.as_bytes().to_vec()],
            pace: None,
            fault: None,
        }
    }

    /// Sends one piece every `pace`.
    pub fn paced(mut self, pace: Duration) -> Reply {
        self.pace = Some(pace);
        self
    }

    pub fn header(mut self, name: &str, value: &str) -> Reply {
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn fault(mut self, fault: Fault) -> Reply {
        self.fault = Some(fault);
        self
    }
}

/// A request the fixture received.
#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub authorization: Option<String>,
    pub body: Value,
}

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    /// Served when the queue is empty.
    fallback: Option<Reply>,
    received: Vec<Received>,
    /// Replies whose connection the client (plugboard) closed before their end.
    abandoned: Arc<std::sync::atomic::AtomicUsize>,
}

/// The fixture server, stopped on drop.
pub struct FixtureBackend {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    state: Arc<Mutex<State>>,
    _runtime: tokio::runtime::Runtime,
}

impl FixtureBackend {
    pub fn start() -> FixtureBackend {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("a runtime");
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("binds");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&shared);
            async move { answer(&state, uri, headers, body).await }
        });
        runtime.spawn(async move {
            use axum::serve::ListenerExt;
            let listener = listener.tap_io(|tcp| {
                let _ = tcp.set_nodelay(true);
            });
            let _ = axum::serve(listener, app).await;
        });
        FixtureBackend {
            base,
            state,
            _runtime: runtime,
        }
    }

    /// Queues a reply for the next request.
    pub fn push(&self, reply: Reply) {
        self.lock().replies.push_back(reply);
    }

    /// The reply for every request once the queue is empty.
    pub fn always(&self, reply: Reply) {
        self.lock().fallback = Some(reply);
    }

    /// How many replies were left unread: the connection closed before their end.
    pub fn abandoned(&self) -> usize {
        self.lock()
            .abandoned
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What was received so far.
    pub fn received(&self) -> Vec<Received> {
        self.lock().received.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

async fn answer(state: &Mutex<State>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let (reply, abandoned) = {
        let mut state = state.lock().unwrap_or_else(|e| e.into_inner());
        state.received.push(Received {
            path: uri.path().to_string(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        });
        let reply = state.replies.pop_front().or_else(|| state.fallback.clone());
        (reply, Arc::clone(&state.abandoned))
    };
    let Some(reply) = reply else {
        return Response::builder()
            .status(StatusCode::INTERNAL_SERVER_ERROR)
            .body(Body::from(
                r#"{"error": "the fixture has no reply queued"}"#,
            ))
            .expect("a response");
    };
    if let Some(Fault::Delay(delay)) = reply.fault {
        tokio::time::sleep(delay).await;
    }
    let mut pieces: Vec<Bytes> = reply.pieces.iter().cloned().map(Bytes::from).collect();
    let mut end: Option<Fault> = None;
    if let Some(fault @ (Fault::ResetAfter(n) | Fault::StallAfter(n))) = reply.fault {
        let mut kept = Vec::new();
        let mut sent = 0;
        for piece in pieces {
            if sent >= n {
                break;
            }
            let take = piece.len().min(n - sent);
            kept.push(piece.slice(..take));
            sent += take;
        }
        pieces = kept;
        end = Some(fault);
    }
    let stream = async_pieces(pieces, end, reply.pace, Unread(Some(abandoned)));
    let mut response = Response::builder().status(reply.status);
    for (name, value) in &reply.headers {
        response = response.header(name, value);
    }
    response
        .body(Body::from_stream(stream))
        .expect("a response")
}

/// Counts a reply as abandoned when its body is dropped before its end.
struct Unread(Option<Arc<std::sync::atomic::AtomicUsize>>);

impl Drop for Unread {
    fn drop(&mut self) {
        if let Some(count) = self.0.take() {
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// The pieces one by one (a yield or the pace between, so that each goes out on its own),
/// then the fault.
fn async_pieces(
    pieces: Vec<Bytes>,
    end: Option<Fault>,
    pace: Option<Duration>,
    unread: Unread,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures::stream::unfold(
        (pieces.into_iter(), end, true, unread),
        move |(mut pieces, end, first, mut unread)| async move {
            match pieces.next() {
                Some(piece) => {
                    match pace {
                        Some(pace) if !first => tokio::time::sleep(pace).await,
                        _ => tokio::task::yield_now().await,
                    }
                    Some((Ok(piece), (pieces, end, false, unread)))
                }
                None => match end {
                    Some(Fault::ResetAfter(_)) => Some((
                        Err(std::io::Error::other("the fixture cuts the connection")),
                        (pieces, None, false, unread),
                    )),
                    Some(Fault::StallAfter(_)) => {
                        std::future::pending::<()>().await;
                        None
                    }
                    _ => {
                        // Read to the end: not abandoned.
                        let _ = unread.0.take();
                        None
                    }
                },
            }
        },
    )
}
