//! A fake Hugging Face hub for the store's tests (a test double, named as one: the hub is not
//! reachable from here). An axum server on loopback that answers as the hub does where its
//! clients look — plugboard's store and Python's `huggingface_hub`:
//!
//! - `HEAD|GET /{org}/{repo}/resolve/{revision}/{file}`: a redirect to the CDN (an absolute
//!   URL, as the hub's own), with `X-Repo-Commit`, `X-Linked-Etag` (the SHA-256) and
//!   `X-Linked-Size`; 404 with `X-Error-Code: RepoNotFound` or `EntryNotFound`;
//! - `GET /cdn/{org}/{repo}/{sha256}` (on 127.0.0.2): the bytes, `Range` answered 206;
//! - `GET /api/models/{org}/{repo}/revision/{revision}`: the repository's files.
//!
//! It serves real files (the test GGUFs) and, per file, a fault: a connection cut part way
//! (once), wrong bytes, a slow file. It counts the CDN requests and records their ranges.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::Response;
use axum::routing::get;

/// The commit every repository of the fake hub is at.
pub const COMMIT: &str = "0123456789abcdef0123456789abcdef01234567";

/// What goes wrong when a file's bytes are sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HubFault {
    /// The first download is cut after this many bytes; later ones are whole.
    CutOnceAfter(u64),
    /// One byte (past the GGUF magic) is wrong: the SHA-256 does not match.
    WrongBytes,
    /// Bytes come at about this many per second.
    Slow(u64),
}

#[derive(Clone)]
struct HubFile {
    path: PathBuf,
    sha256: String,
    size: u64,
    fault: Option<HubFault>,
}

#[derive(Default)]
struct Hub {
    /// repo → file name → file.
    repos: HashMap<String, HashMap<String, HubFile>>,
    /// Requests for bytes: (sha256, first byte asked for).
    downloads: Vec<(String, u64)>,
    /// Whether a `CutOnceAfter` fault has cut already, by sha.
    cut: Vec<String>,
    /// The CDN's address: another host (127.0.0.2), as the hub's CDN is; clients follow the
    /// hub's own redirects but read the headers of the redirect to the CDN.
    cdn: String,
}

/// The running fake hub; stopped when dropped.
pub struct FakeHub {
    pub base: String,
    state: Arc<Mutex<Hub>>,
    _runtime: tokio::runtime::Runtime,
}

impl FakeHub {
    pub fn start() -> FakeHub {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("a runtime");
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .expect("a loopback port");
        let cdn_listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.2:0"))
            .expect("a second loopback address");
        let base = format!("http://{}", listener.local_addr().expect("an address"));
        let state = Arc::new(Mutex::new(Hub {
            cdn: format!("http://{}", cdn_listener.local_addr().expect("an address")),
            ..Hub::default()
        }));
        let app = axum::Router::new()
            .route("/cdn/{org}/{repo}/{sha}", get(cdn))
            .route(
                "/api/models/{org}/{repo}/revision/{revision}",
                get(repo_info),
            )
            .route(
                "/{org}/{repo}/resolve/{revision}/{*file}",
                get(resolve).head(resolve),
            )
            .with_state(Arc::clone(&state));
        let cdn_app = app.clone();
        runtime.spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        runtime.spawn(async move {
            let _ = axum::serve(cdn_listener, cdn_app).await;
        });
        FakeHub {
            base,
            state,
            _runtime: runtime,
        }
    }

    /// Serves a file of the disk as `repo`'s `name` (hashed once here).
    pub fn add(&self, repo: &str, name: &str, path: &Path, fault: Option<HubFault>) -> String {
        let sha256 = sha256_of(path);
        let size = std::fs::metadata(path).expect("the file is here").len();
        let mut hub = self.state.lock().expect("the hub");
        hub.repos.entry(repo.to_string()).or_default().insert(
            name.to_string(),
            HubFile {
                path: path.to_path_buf(),
                sha256: sha256.clone(),
                size,
                fault,
            },
        );
        sha256
    }

    /// The byte requests so far: (sha256, first byte asked for).
    pub fn downloads(&self) -> Vec<(String, u64)> {
        self.state.lock().expect("the hub").downloads.clone()
    }
}

/// A file's SHA-256, cached beside the file's size and time (the test GGUFs are hashed once
/// per test process, not per test).
pub fn sha256_of(path: &Path) -> String {
    static CACHE: Mutex<Option<HashMap<PathBuf, String>>> = Mutex::new(None);
    let mut cache = CACHE.lock().expect("the cache");
    let cache = cache.get_or_insert_with(HashMap::new);
    if let Some(sha) = cache.get(path) {
        return sha.clone();
    }
    use sha2::Digest;
    let mut hasher = sha2::Sha256::new();
    let mut file = std::fs::File::open(path).expect("the file opens");
    std::io::copy(&mut file, &mut hasher).expect("the file reads");
    let sha = hex::encode(hasher.finalize());
    cache.insert(path.to_path_buf(), sha.clone());
    sha
}

fn status(code: StatusCode, error: &str) -> Response {
    Response::builder()
        .status(code)
        .header("x-error-code", error)
        .header("x-error-message", format!("{error} (fake hub)"))
        .body(Body::empty())
        .expect("a response")
}

async fn resolve(
    State(state): State<Arc<Mutex<Hub>>>,
    UrlPath((org, repo, _revision, file)): UrlPath<(String, String, String, String)>,
) -> Response {
    let hub = state.lock().expect("the hub");
    let Some(files) = hub.repos.get(&format!("{org}/{repo}")) else {
        return status(StatusCode::NOT_FOUND, "RepoNotFound");
    };
    let Some(found) = files.get(&file) else {
        return status(StatusCode::NOT_FOUND, "EntryNotFound");
    };
    Response::builder()
        .status(StatusCode::FOUND)
        .header(
            "location",
            format!("{}/cdn/{org}/{repo}/{}", hub.cdn, found.sha256),
        )
        .header("x-repo-commit", COMMIT)
        .header("x-linked-etag", format!("\"{}\"", found.sha256))
        .header("x-linked-size", found.size.to_string())
        .header("etag", "\"0000000000000000000000000000000000000000\"")
        .header("content-length", "0")
        .body(Body::empty())
        .expect("a response")
}

async fn repo_info(
    State(state): State<Arc<Mutex<Hub>>>,
    UrlPath((org, repo, _revision)): UrlPath<(String, String, String)>,
) -> Response {
    let hub = state.lock().expect("the hub");
    let Some(files) = hub.repos.get(&format!("{org}/{repo}")) else {
        return status(StatusCode::NOT_FOUND, "RepoNotFound");
    };
    let siblings: Vec<serde_json::Value> = files
        .keys()
        .map(|f| serde_json::json!({ "rfilename": f }))
        .collect();
    let body =
        serde_json::json!({"id": format!("{org}/{repo}"), "sha": COMMIT, "siblings": siblings});
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("a response")
}

async fn cdn(
    State(state): State<Arc<Mutex<Hub>>>,
    UrlPath((org, repo, sha)): UrlPath<(String, String, String)>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    let mut hub = state.lock().expect("the hub");
    let Some(file) = hub
        .repos
        .get(&format!("{org}/{repo}"))
        .and_then(|files| files.values().find(|f| f.sha256 == sha))
        .cloned()
    else {
        return status(StatusCode::NOT_FOUND, "EntryNotFound");
    };
    let start: u64 = headers
        .get("range")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("bytes="))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if start >= file.size {
        return Response::builder()
            .status(StatusCode::RANGE_NOT_SATISFIABLE)
            .header("content-range", format!("bytes */{}", file.size))
            .body(Body::empty())
            .expect("a response");
    }
    let mut cut_at = None;
    if method == Method::GET {
        hub.downloads.push((sha.clone(), start));
        if let Some(HubFault::CutOnceAfter(n)) = file.fault
            && !hub.cut.contains(&sha)
        {
            hub.cut.push(sha.clone());
            cut_at = Some(n);
        }
    }
    drop(hub);
    let ranged = headers.contains_key("range");
    let builder = Response::builder()
        .status(if ranged {
            StatusCode::PARTIAL_CONTENT
        } else {
            StatusCode::OK
        })
        .header("accept-ranges", "bytes")
        .header("content-length", (file.size - start).to_string())
        .header("etag", format!("\"{sha}\""));
    let builder = if ranged {
        builder.header(
            "content-range",
            format!("bytes {start}-{}/{}", file.size - 1, file.size),
        )
    } else {
        builder
    };
    if method == Method::HEAD {
        return builder.body(Body::empty()).expect("a response");
    }
    builder
        .body(Body::from_stream(body(file, start, cut_at)))
        .expect("a response")
}

/// The file's bytes from `start`, with its fault.
fn body(
    file: HubFile,
    start: u64,
    cut_at: Option<u64>,
) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> {
    const CHUNK: usize = 256 << 10;
    let reader = std::fs::File::open(&file.path).expect("the file opens");
    futures::stream::unfold(
        (reader, start, false),
        move |(mut reader, offset, done)| async move {
            if done || offset >= file.size {
                return None;
            }
            if let Some(cut) = cut_at
                && offset >= cut
            {
                let error = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "cut");
                return Some((Err(error), (reader, offset, true)));
            }
            let mut chunk = vec![0u8; CHUNK.min((file.size - offset) as usize)];
            if let Some(cut) = cut_at {
                chunk.truncate(chunk.len().min((cut - offset) as usize).max(1));
            }
            use std::io::{Read, Seek};
            if let Err(e) = reader
                .seek(std::io::SeekFrom::Start(offset))
                .and_then(|_| reader.read_exact(&mut chunk))
            {
                return Some((Err(e), (reader, offset, true)));
            }
            match file.fault {
                Some(HubFault::WrongBytes)
                    if offset <= 1000 && 1000 < offset + chunk.len() as u64 =>
                {
                    chunk[(1000 - offset) as usize] ^= 0xff;
                }
                Some(HubFault::Slow(rate)) => {
                    tokio::time::sleep(Duration::from_secs_f64(chunk.len() as f64 / rate as f64))
                        .await;
                }
                _ => {}
            }
            let next = offset + chunk.len() as u64;
            Some((Ok(Bytes::from(chunk)), (reader, next, false)))
        },
    )
}
