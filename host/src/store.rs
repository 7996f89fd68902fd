//! The model store: files of Hugging Face repositories, downloaded into the hub's own cache
//! layout, so that Python's `huggingface_hub` finds what plugboard pulled and plugboard uses
//! what it downloaded:
//!
//! ```text
//! <root>/models--org--repo/blobs/<etag>                 the file, named by its hash
//!                         /blobs/<etag>.incomplete      a download under way (resumed from)
//!                         /snapshots/<commit>/<file>    a relative link to the blob
//!                         /refs/<revision>              the commit the revision points at
//! <root>/.locks/models--org--repo/<etag>.lock           held by the process downloading it
//! ```
//!
//! `hf-hub` (0.4.3, with no HTTP feature: `dirs` and `log` only) gives the default cache
//! folder and the token file, as Python's `huggingface_hub` finds them. The download is ours, on the `reqwest` the gateway already builds: hf-hub
//! 0.4.3's own moves the blob into place before any checksum, holds each 10 MB range in memory
//! and gives up after 5 s when another process holds the lock; 1.0 adds `hf-xet` and a second
//! `reqwest` (0.13) to the build, minutes on two cores for a path the tests cannot reach.
//!
//! A file is downloaded once however many ask for it (they share its progress), hashed while
//! it is written (the LFS etag is its SHA-256), resumed from what an interrupted download
//! left, and published — renamed to its blob, linked from its snapshot — only once verified:
//! nothing half-written is ever where a model is looked for. When no one waits for it any
//! more a download stops, and its part is kept for the next pull to resume.
//!
//! Its length is one protocol's: the hub's file listing, resolution, download, resume,
//! verification and publication share the cache layout and its locks, and a download's
//! states are easier to follow in one place than across files.

use std::collections::HashMap;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use reqwest::StatusCode;
use reqwest::header::{ACCEPT_ENCODING, AUTHORIZATION, CONTENT_LENGTH, ETAG, LOCATION, RANGE};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, watch};

use crate::events::{self, Event};

/// One file of one repository at one revision.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct HubFile {
    /// `org/repo`.
    pub repo: String,
    /// A branch, tag or commit (`main` by default).
    pub revision: String,
    /// The file's path in the repository.
    pub file: String,
}

impl std::fmt::Display for HubFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.repo, self.file)?;
        if self.revision != DEFAULT_REVISION {
            write!(f, "@{}", self.revision)?;
        }
        Ok(())
    }
}

pub const DEFAULT_REVISION: &str = "main";

impl HubFile {
    /// Refuses names that would reach outside the store once joined onto its folders: a
    /// repository is two plain segments, a revision and a file are plain segments joined by
    /// `/` (no `..`, no `\`, no `:`, not absolute).
    pub fn check(&self) -> Result<(), PullError> {
        let plain = |segment: &str| {
            !segment.is_empty()
                && segment != "."
                && segment != ".."
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-+=@ ()[],".contains(&b))
        };
        let repo = self.repo.split('/').collect::<Vec<_>>();
        let ok = repo.len() == 2
            && repo.iter().all(|s| plain(s))
            && self.revision.split('/').all(plain)
            && self.file.split('/').all(plain);
        if ok {
            Ok(())
        } else {
            Err(PullError::BadName(self.to_string()))
        }
    }
}

/// Where a pull stands; the last state is `Done`.
#[derive(Clone, Debug)]
pub enum PullState {
    /// Asking the hub which commit and blob the file is.
    Resolving,
    /// Another process is downloading the same blob.
    Waiting {
        digest: String,
    },
    Downloading {
        digest: String,
        total: u64,
        completed: u64,
    },
    Verifying {
        digest: String,
        total: u64,
    },
    Done(Result<Pulled, Arc<PullError>>),
}

/// A file in the store.
#[derive(Clone, Debug)]
pub struct Pulled {
    /// Its path in a snapshot (a link to the blob).
    pub path: PathBuf,
    /// `sha256:<hex>` for LFS files, else the hub's etag.
    pub digest: String,
    pub size: u64,
    /// Whether bytes came over the network (false: the blob was already here).
    pub downloaded: bool,
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{0} was not found on the hub")]
    NotFound(String),
    #[error(
        "the hub refused access to {what} ({status}): set HF_TOKEN to a token that may read it"
    )]
    Unauthorized { what: String, status: u16 },
    #[error("the hub answered {status} for {what}: {message}")]
    Hub {
        what: String,
        status: u16,
        message: String,
    },
    #[error("cannot reach the hub at {endpoint}: {error}")]
    Network { endpoint: String, error: String },
    #[error("the hub's answer for {0} lacks {1}")]
    Protocol(String, &'static str),
    #[error(
        "{file} is corrupt: its SHA-256 is {actual}, the hub says {expected}; nothing was kept"
    )]
    Checksum {
        file: String,
        expected: String,
        actual: String,
    },
    #[error("{0} is not a GGUF file (it does not start with \"GGUF\"); nothing was kept")]
    NotGguf(String),
    #[error(
        "not enough disk space for {file} in {dir}: {needed} bytes to write, {free} free, {reserve} kept free"
    )]
    Disk {
        file: String,
        dir: String,
        needed: u64,
        free: u64,
        reserve: u64,
    },
    #[error("{repo} has no GGUF file of quantisation {quant}; it has: {available}")]
    NoQuant {
        repo: String,
        quant: String,
        available: String,
    },
    #[error("the download of {0} was cancelled")]
    Cancelled(String),
    #[error("'{0}' is not a repository file name (plain path segments only)")]
    BadName(String),
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
}

impl PullError {
    /// Whether trying again (from what was written) may succeed.
    fn transient(&self) -> bool {
        matches!(self, PullError::Network { .. })
            || matches!(self, PullError::Hub { status, .. } if *status >= 500 || *status == 429)
    }

    /// The HTTP status an API answers this with.
    pub fn status(&self) -> u16 {
        match self {
            PullError::NotFound(_) | PullError::NoQuant { .. } => 404,
            PullError::Unauthorized { .. } => 403,
            PullError::NotGguf(_) | PullError::BadName(_) => 400,
            PullError::Disk { .. } => 507,
            PullError::Cancelled(_) => 499,
            PullError::Io(..) => 500,
            _ => 502,
        }
    }
}

/// What the store is given.
#[derive(Clone, Debug)]
pub struct StoreOptions {
    /// The hub cache folder.
    pub root: PathBuf,
    /// The hub's address (`HF_ENDPOINT`, default <https://huggingface.co>).
    pub endpoint: String,
    /// Sent to the hub as a bearer token (`HF_TOKEN`, else the token file of `HF_HOME`).
    pub token: Option<String>,
    /// Bytes a download must leave free on the disk.
    pub reserve: u64,
}

impl StoreOptions {
    /// The hub's own variables: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    /// `~/.cache/huggingface/hub`; `HF_ENDPOINT`; `HF_TOKEN`, else the token file.
    pub fn from_env() -> StoreOptions {
        let root = std::env::var_os("HF_HUB_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| hf_hub::Cache::from_env().path().clone());
        let token = std::env::var("HF_TOKEN")
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| hf_hub::Cache::from_env().token());
        StoreOptions {
            root,
            endpoint: std::env::var("HF_ENDPOINT")
                .unwrap_or_else(|_| "https://huggingface.co".into())
                .trim_end_matches('/')
                .to_string(),
            token,
            reserve: 0,
        }
    }
}

/// A GGUF file found in the store.
#[derive(Clone, Debug)]
pub struct Cached {
    pub repo: String,
    pub file: String,
    pub commit: String,
    pub path: PathBuf,
    pub size: u64,
    pub modified: std::time::SystemTime,
}

/// The store.
pub struct Store {
    options: StoreOptions,
    /// Asks the hub about a file; follows only the hub's own (relative) redirects, so the
    /// headers read are the hub's, not the CDN's.
    head: reqwest::Client,
    /// Downloads; follows redirects (to the CDN).
    get: reqwest::Client,
    /// Downloads under way in this process.
    pulls: Mutex<HashMap<HubFile, Arc<watch::Sender<PullState>>>>,
}

/// How many times a download is resumed after the connection fails.
const RETRIES: u32 = 5;

impl Store {
    pub fn new(options: StoreOptions) -> Result<Arc<Store>, String> {
        let build = |redirect| {
            reqwest::Client::builder()
                .user_agent(concat!("plugboard/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(Duration::from_secs(10))
                .read_timeout(Duration::from_secs(30))
                .redirect(redirect)
                .build()
                .map_err(|e| format!("cannot build the hub client: {e}"))
        };
        Ok(Arc::new(Store {
            head: build(reqwest::redirect::Policy::none())?,
            get: build(reqwest::redirect::Policy::limited(10))?,
            options,
            pulls: Mutex::new(HashMap::new()),
        }))
    }

    pub fn root(&self) -> &Path {
        &self.options.root
    }

    pub fn endpoint(&self) -> &str {
        &self.options.endpoint
    }

    fn repo_dir(&self, repo: &str) -> PathBuf {
        self.options.root.join(folder(repo))
    }

    /// The commit a revision points at here: itself when it is a commit, else its ref.
    fn commit(&self, repo: &str, revision: &str) -> Option<String> {
        if is_commit(revision) {
            return Some(revision.to_string());
        }
        let reference = self.repo_dir(repo).join("refs").join(revision);
        Some(std::fs::read_to_string(reference).ok()?.trim().to_string())
    }

    /// The file's path if it is here, at the commit its revision points at.
    pub fn find(&self, file: &HubFile) -> Option<PathBuf> {
        file.check().ok()?;
        let path = self
            .repo_dir(&file.repo)
            .join("snapshots")
            .join(self.commit(&file.repo, &file.revision)?)
            .join(&file.file);
        path.is_file().then_some(path)
    }

    /// The GGUF files of a repository here at a revision (its snapshot).
    pub fn snapshot_ggufs(&self, repo: &str, revision: &str) -> Vec<String> {
        let Some(commit) = self.commit(repo, revision) else {
            return vec![];
        };
        let dir = self.repo_dir(repo).join("snapshots").join(commit);
        let mut files = Vec::new();
        walk_ggufs(&dir, &dir, &mut files);
        files.sort();
        files
    }

    /// Every GGUF file here: the files of each repository's snapshots.
    pub fn list(&self) -> Vec<Cached> {
        let mut found = Vec::new();
        let Ok(repos) = std::fs::read_dir(&self.options.root) else {
            return found;
        };
        for repo_dir in repos.flatten() {
            let name = repo_dir.file_name().to_string_lossy().into_owned();
            let Some(repo) = name.strip_prefix("models--") else {
                continue;
            };
            let repo = repo.replacen("--", "/", 1);
            let Ok(snapshots) = std::fs::read_dir(repo_dir.path().join("snapshots")) else {
                continue;
            };
            for snapshot in snapshots.flatten() {
                let commit = snapshot.file_name().to_string_lossy().into_owned();
                let mut files = Vec::new();
                walk_ggufs(&snapshot.path(), &snapshot.path(), &mut files);
                for file in files {
                    let path = snapshot.path().join(&file);
                    // Follows the link: the blob's size and time.
                    let Ok(meta) = std::fs::metadata(&path) else {
                        continue;
                    };
                    found.push(Cached {
                        repo: repo.clone(),
                        file,
                        commit: commit.clone(),
                        path,
                        size: meta.len(),
                        modified: meta.modified().unwrap_or(std::time::UNIX_EPOCH),
                    });
                }
            }
        }
        found.sort_by(|a, b| (&a.repo, &a.file).cmp(&(&b.repo, &b.file)));
        found
    }

    /// Removes a file from every snapshot, and its blob when no snapshot links to it any
    /// more. Returns the bytes freed.
    pub fn remove(&self, repo: &str, file: &str) -> std::io::Result<u64> {
        let repo_dir = self.repo_dir(repo);
        if !repo_dir.is_dir() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{repo} is not in the store"),
            ));
        }
        let mut blobs = Vec::new();
        let mut removed = false;
        for snapshot in std::fs::read_dir(repo_dir.join("snapshots"))?.flatten() {
            let link = snapshot.path().join(file);
            if link.symlink_metadata().is_ok() {
                if let Ok(blob) = std::fs::canonicalize(&link) {
                    blobs.push(blob);
                }
                std::fs::remove_file(&link)?;
                removed = true;
            }
        }
        if !removed {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{repo}/{file} is not in the store"),
            ));
        }
        let mut linked = Vec::new();
        for snapshot in std::fs::read_dir(repo_dir.join("snapshots"))?.flatten() {
            collect_links(&snapshot.path(), &mut linked);
        }
        let mut freed = 0;
        for blob in blobs {
            if !linked.contains(&blob) {
                freed += std::fs::metadata(&blob).map(|m| m.len()).unwrap_or(0);
                std::fs::remove_file(&blob)?;
            }
        }
        // Snapshots left empty go; a repository with none left goes whole.
        for snapshot in std::fs::read_dir(repo_dir.join("snapshots"))?.flatten() {
            remove_empty_dirs(&snapshot.path());
        }
        let blobs_left = std::fs::read_dir(repo_dir.join("blobs"))
            .map(|d| d.count())
            .unwrap_or(0);
        if blobs_left == 0 {
            std::fs::remove_dir_all(&repo_dir)?;
        }
        Ok(freed)
    }

    /// The GGUF files of a repository on the hub.
    pub async fn hub_ggufs(&self, repo: &str, revision: &str) -> Result<Vec<String>, PullError> {
        let url = format!(
            "{}/api/models/{repo}/revision/{revision}",
            self.options.endpoint
        );
        let response = self
            .authorized(self.get.get(&url))
            .send()
            .await
            .map_err(|e| self.network(e))?;
        let status = response.status();
        if !status.is_success() {
            return Err(hub_error(status, repo.to_string(), response).await);
        }
        let info: serde_json::Value = response.json().await.map_err(|e| self.network(e))?;
        let mut files: Vec<String> = info["siblings"]
            .as_array()
            .ok_or_else(|| PullError::Protocol(repo.into(), "the list of files"))?
            .iter()
            .filter_map(|s| s["rfilename"].as_str())
            .filter(|f| f.ends_with(".gguf"))
            .map(str::to_string)
            .collect();
        files.sort();
        Ok(files)
    }

    /// Pulls a file (or joins the pull of it under way) and returns its progress; the last
    /// state is [`PullState::Done`]. The download stops when every receiver is dropped.
    pub fn pull(self: &Arc<Self>, file: HubFile) -> watch::Receiver<PullState> {
        let mut pulls = self.pulls.lock().unwrap_or_else(|e| e.into_inner());
        // A download no one watches any more is ending: a new pull starts its own (which
        // waits for the old one's writer, through the blob's lock).
        if let Some(sender) = pulls.get(&file)
            && sender.receiver_count() > 0
        {
            return sender.subscribe();
        }
        let (sender, receiver) = watch::channel(PullState::Resolving);
        let sender = Arc::new(sender);
        pulls.insert(file.clone(), Arc::clone(&sender));
        drop(pulls);
        let store = Arc::clone(self);
        tokio::spawn(async move {
            let outcome = tokio::select! {
                outcome = store.download(&file, &sender) => outcome,
                _ = sender.closed() => Err(PullError::Cancelled(file.to_string())),
            };
            if let Err(error) = &outcome {
                tracing::warn!(%file, "pull failed: {error}");
            }
            events::publish(Event::PullDone {
                file: file.to_string(),
                error: outcome.as_ref().err().map(|e| e.to_string()),
            });
            let mut pulls = store.pulls.lock().unwrap_or_else(|e| e.into_inner());
            if pulls.get(&file).is_some_and(|s| Arc::ptr_eq(s, &sender)) {
                pulls.remove(&file);
            }
            drop(pulls);
            sender.send_replace(PullState::Done(outcome.map_err(Arc::new)));
        });
        receiver
    }

    /// Pulls a file and waits for it.
    pub async fn pull_and_wait(self: &Arc<Self>, file: HubFile) -> Result<Pulled, Arc<PullError>> {
        finished(self.pull(file.clone()), &file).await
    }

    async fn download(
        &self,
        file: &HubFile,
        progress: &watch::Sender<PullState>,
    ) -> Result<Pulled, PullError> {
        file.check()?;
        let meta = self.metadata(file).await?;
        let repo_dir = self.repo_dir(&file.repo);
        let blob = repo_dir.join("blobs").join(&meta.etag);
        let mut downloaded = false;
        if !blob.is_file() {
            let lock = self.lock(file, &meta, progress).await?;
            if !blob.is_file() {
                let mut attempt = 0;
                loop {
                    match self.fetch_blob(file, &meta, &blob, &lock, progress).await {
                        Ok(()) => break,
                        Err(error) if error.transient() && attempt < RETRIES => {
                            attempt += 1;
                            tracing::info!(%file, "download interrupted ({error}); resuming");
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                        }
                        Err(error) => return Err(error),
                    }
                }
                downloaded = true;
            }
        }
        let pointer = repo_dir
            .join("snapshots")
            .join(&meta.commit)
            .join(&file.file);
        let io = |e| PullError::Io(format!("cannot link {}", pointer.display()), e);
        if let Some(parent) = pointer.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        link_blob(&blob, &pointer, &file.file).map_err(io)?;
        if !is_commit(&file.revision) {
            let reference = repo_dir.join("refs").join(&file.revision);
            if let Some(parent) = reference.parent() {
                std::fs::create_dir_all(parent).map_err(io)?;
            }
            std::fs::write(&reference, &meta.commit).map_err(io)?;
        }
        Ok(Pulled {
            path: pointer,
            digest: meta.digest(),
            size: meta.size,
            downloaded,
        })
    }

    /// Asks the hub which commit and blob a file is, following the hub's own redirects (a
    /// renamed repository) but not the CDN's.
    async fn metadata(&self, file: &HubFile) -> Result<Meta, PullError> {
        let mut url = format!(
            "{}/{}/resolve/{}/{}",
            self.options.endpoint, file.repo, file.revision, file.file
        );
        for _ in 0..10 {
            let response = self
                .authorized(self.head.head(&url))
                .header(ACCEPT_ENCODING, "identity")
                .send()
                .await
                .map_err(|e| self.network(e))?;
            let status = response.status();
            let headers = response.headers();
            let header = |name: &str| {
                headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string)
            };
            let location = header(LOCATION.as_str());
            if status.is_redirection()
                && let Some(location) = &location
                && location.starts_with('/')
            {
                url = format!("{}{location}", origin(&url));
                continue;
            }
            if !(status.is_success() || status.is_redirection()) {
                return Err(hub_error(status, file.to_string(), response).await);
            }
            let etag = header("x-linked-etag")
                .or_else(|| header(ETAG.as_str()))
                .ok_or_else(|| PullError::Protocol(file.to_string(), "an ETag"))?;
            let etag = etag.trim_start_matches("W/").trim_matches('"').to_string();
            let size = header("x-linked-size")
                .or_else(|| header(CONTENT_LENGTH.as_str()))
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| PullError::Protocol(file.to_string(), "the file's size"))?;
            let commit = header("x-repo-commit")
                .filter(|c| is_commit(c))
                .ok_or_else(|| {
                    PullError::Protocol(file.to_string(), "an X-Repo-Commit of 40 hex digits")
                })?;
            if etag.is_empty() || !etag.bytes().all(|b| b.is_ascii_alphanumeric()) {
                return Err(PullError::Protocol(
                    file.to_string(),
                    "an ETag of letters and digits",
                ));
            }
            return Ok(Meta {
                etag,
                size,
                commit,
                url: location.filter(|_| status.is_redirection()).unwrap_or(url),
            });
        }
        Err(PullError::Protocol(
            file.to_string(),
            "an end to its redirects",
        ))
    }

    /// Takes the blob's lock (shared with Python's `huggingface_hub`), waiting while another
    /// process downloads it.
    async fn lock(
        &self,
        file: &HubFile,
        meta: &Meta,
        progress: &watch::Sender<PullState>,
    ) -> Result<std::fs::File, PullError> {
        let path = self
            .options
            .root
            .join(".locks")
            .join(folder(&file.repo))
            .join(format!("{}.lock", meta.etag));
        let io = |e| PullError::Io(format!("cannot lock {}", path.display()), e);
        std::fs::create_dir_all(path.parent().expect("a folder")).map_err(io)?;
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io)?;
        loop {
            match lock.try_lock() {
                Ok(()) => return Ok(lock),
                Err(std::fs::TryLockError::WouldBlock) => {
                    progress.send_replace(PullState::Waiting {
                        digest: meta.digest(),
                    });
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
                Err(std::fs::TryLockError::Error(e)) => return Err(io(e)),
            }
        }
    }

    /// Downloads the blob into `<blob>.incomplete` (from where an earlier try stopped),
    /// verifies it and renames it into place.
    async fn fetch_blob(
        &self,
        file: &HubFile,
        meta: &Meta,
        blob: &Path,
        lock: &std::fs::File,
        progress: &watch::Sender<PullState>,
    ) -> Result<(), PullError> {
        let part = blob.with_extension("incomplete");
        let dir = blob.parent().expect("blobs/");
        let io = |what: &str, e| PullError::Io(format!("{what} {}", part.display()), e);
        std::fs::create_dir_all(dir).map_err(|e| io("cannot create the folder of", e))?;
        let mut have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if have > meta.size {
            have = 0;
        }
        let free = fs4::available_space(dir).map_err(|e| io("cannot see the free space for", e))?;
        let needed = meta.size - have;
        if free < needed.saturating_add(self.options.reserve) {
            return Err(PullError::Disk {
                file: file.to_string(),
                dir: dir.display().to_string(),
                needed,
                free,
                reserve: self.options.reserve,
            });
        }
        let digest = meta.digest();
        progress.send_replace(PullState::Downloading {
            digest: digest.clone(),
            total: meta.size,
            completed: have,
        });
        let mut request = self.get.get(&meta.url);
        if origin(&meta.url) == origin(&self.options.endpoint) {
            request = self.authorized(request);
        }
        if have > 0 {
            request = request.header(RANGE, format!("bytes={have}-"));
        }
        let response = if have == meta.size {
            None
        } else {
            let response = request.send().await.map_err(|e| self.network(e))?;
            let status = response.status();
            if status == StatusCode::OK {
                have = 0; // The server sends the whole file: start again.
            } else if status != StatusCode::PARTIAL_CONTENT {
                return Err(hub_error(status, file.to_string(), response).await);
            }
            Some(response)
        };

        // The bytes are written, and hashed, each on a thread of its own while the next
        // arrive.
        let (to_write, writes) = mpsc::channel::<Bytes>(64);
        let (to_hash, hashes) = mpsc::channel::<Bytes>(64);
        let check_gguf = file.file.ends_with(".gguf").then(|| file.to_string());
        let (writing, hashing) = (part.clone(), part.clone());
        // The writer holds the blob's lock too (a duplicate of its descriptor: the lock is
        // the open file's), so that a download cancelled under it keeps it until its last
        // queued bytes are written, and the next one starts from a part no one writes.
        let held = lock
            .try_clone()
            .map_err(|e| io("cannot share the lock of", e))?;
        let writer = tokio::task::spawn_blocking(move || {
            let written = write_part(&writing, have, writes, check_gguf);
            drop(held);
            written
        });
        let hasher = tokio::task::spawn_blocking(move || hash_part(&hashing, have, hashes));
        let mut completed = have;
        let mut reported = have;
        let mut failure = None;
        if let Some(response) = response {
            let mut body = response.bytes_stream();
            while let Some(chunk) = body.next().await {
                match chunk {
                    Ok(chunk) => {
                        completed += chunk.len() as u64;
                        if to_hash.send(chunk.clone()).await.is_err()
                            || to_write.send(chunk).await.is_err()
                        {
                            break; // The writer stopped: its error says why.
                        }
                        if completed - reported >= 1 << 20 || completed == meta.size {
                            if completed * 100 / meta.size.max(1)
                                != reported * 100 / meta.size.max(1)
                            {
                                events::publish(Event::PullProgress {
                                    file: file.to_string(),
                                    completed,
                                    total: meta.size,
                                });
                            }
                            reported = completed;
                            progress.send_replace(PullState::Downloading {
                                digest: digest.clone(),
                                total: meta.size,
                                completed,
                            });
                        }
                    }
                    Err(e) => {
                        failure = Some(self.network(e));
                        break;
                    }
                }
            }
        }
        drop((to_write, to_hash));
        let joined = |e: tokio::task::JoinError| {
            io("a thread writing", std::io::Error::other(e.to_string()))
        };
        let written = writer.await.map_err(joined)??;
        let hash = hasher.await.map_err(joined)??;
        if let Some(failure) = failure {
            return Err(failure);
        }
        if written < meta.size {
            return Err(PullError::Network {
                endpoint: self.options.endpoint.clone(),
                error: format!(
                    "the connection closed after {written} of {} bytes",
                    meta.size
                ),
            });
        }
        progress.send_replace(PullState::Verifying {
            digest: digest.clone(),
            total: meta.size,
        });
        if written > meta.size || meta.sha256().is_some_and(|expected| expected != hash) {
            let _ = std::fs::remove_file(&part);
            return Err(PullError::Checksum {
                file: file.to_string(),
                expected: meta.sha256().unwrap_or_default().to_string(),
                actual: hash,
            });
        }
        let on_disk = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        if on_disk != written {
            return Err(PullError::Io(
                format!(
                    "{} holds {on_disk} bytes, {written} were written",
                    part.display()
                ),
                std::io::Error::other("the part file changed under the download"),
            ));
        }
        std::fs::rename(&part, blob).map_err(|e| io("cannot publish", e))?;
        Ok(())
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.options.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {token}")),
            None => request,
        }
    }

    fn network(&self, error: reqwest::Error) -> PullError {
        // Without the URL: it may carry a signed CDN query.
        PullError::Network {
            endpoint: self.options.endpoint.clone(),
            error: error.without_url().to_string(),
        }
    }
}

/// Waits for a pull's last state.
pub async fn finished(
    mut progress: watch::Receiver<PullState>,
    file: &HubFile,
) -> Result<Pulled, Arc<PullError>> {
    loop {
        if let PullState::Done(outcome) = &*progress.borrow_and_update() {
            return outcome.clone();
        }
        if progress.changed().await.is_err() {
            return Err(Arc::new(PullError::Cancelled(file.to_string())));
        }
    }
}

/// What the hub says of a file.
struct Meta {
    /// The blob's name: the SHA-256 of an LFS file, the git hash of another.
    etag: String,
    size: u64,
    commit: String,
    /// Where its bytes are (the CDN's address, when the hub redirects there).
    url: String,
}

impl Meta {
    fn sha256(&self) -> Option<&str> {
        (self.etag.len() == 64 && self.etag.bytes().all(|b| b.is_ascii_hexdigit()))
            .then_some(self.etag.as_str())
    }

    fn digest(&self) -> String {
        match self.sha256() {
            Some(sha) => format!("sha256:{sha}"),
            None => self.etag.clone(),
        }
    }
}

/// Appends the chunks to the part file (cut to `start` bytes first). Returns the length
/// written. A file that should be a GGUF and does not start like one is deleted.
fn write_part(
    part: &Path,
    start: u64,
    mut chunks: mpsc::Receiver<Bytes>,
    check_gguf: Option<String>,
) -> Result<u64, PullError> {
    let io = |what: &str, e| PullError::Io(format!("{what} {}", part.display()), e);
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(part)
        .map_err(|e| io("cannot open", e))?;
    file.set_len(start).map_err(|e| io("cannot cut", e))?;
    let mut head: Vec<u8> = Vec::with_capacity(4);
    (&mut file)
        .take(4)
        .read_to_end(&mut head)
        .map_err(|e| io("cannot read", e))?;
    file.seek(std::io::SeekFrom::End(0))
        .map_err(|e| io("cannot seek", e))?;
    let mut written = start;
    let mut out = std::io::BufWriter::with_capacity(1 << 20, file);
    while let Some(chunk) = chunks.blocking_recv() {
        if head.len() < 4 {
            head.extend(&chunk[..chunk.len().min(4 - head.len())]);
            if head.len() == 4
                && let Some(name) = &check_gguf
                && head != b"GGUF"
            {
                drop(out);
                let _ = std::fs::remove_file(part);
                return Err(PullError::NotGguf(name.clone()));
            }
        }
        out.write_all(&chunk).map_err(|e| io("cannot write", e))?;
        written += chunk.len() as u64;
    }
    let file = out
        .into_inner()
        .map_err(|e| io("cannot write", e.into_error()))?;
    file.sync_all().map_err(|e| io("cannot sync", e))?;
    Ok(written)
}

/// The SHA-256 of the first `start` bytes of the part file (what an earlier download left),
/// then of the chunks: on a thread of its own, beside the writer's, since hashing is the
/// slowest step (about 1.1 GB/s a core here, slower than loopback).
fn hash_part(
    part: &Path,
    start: u64,
    mut chunks: mpsc::Receiver<Bytes>,
) -> Result<String, PullError> {
    let mut hasher = Sha256::new();
    if start > 0 {
        let file = std::fs::File::open(part)
            .map_err(|e| PullError::Io(format!("cannot read {}", part.display()), e))?;
        std::io::copy(&mut file.take(start), &mut hasher)
            .map_err(|e| PullError::Io(format!("cannot read {}", part.display()), e))?;
    }
    while let Some(chunk) = chunks.blocking_recv() {
        hasher.update(&chunk);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Links `pointer` to the blob by a relative path, as `huggingface_hub` does (a copy where
/// links cannot be made).
fn link_blob(blob: &Path, pointer: &Path, file: &str) -> std::io::Result<()> {
    if pointer.symlink_metadata().is_ok() {
        std::fs::remove_file(pointer)?;
    }
    // snapshots/<commit>/<file>: one level up per folder of the file, two more to the repo.
    let ups = Path::new(file).components().count() + 1;
    let target: PathBuf = std::iter::repeat_n("..", ups)
        .collect::<PathBuf>()
        .join("blobs")
        .join(blob.file_name().unwrap_or_default());
    #[cfg(unix)]
    return std::os::unix::fs::symlink(&target, pointer);
    #[cfg(not(unix))]
    return std::fs::copy(blob, pointer).map(|_| ());
}

async fn hub_error(status: StatusCode, what: String, response: reqwest::Response) -> PullError {
    let code = response
        .headers()
        .get("x-error-code")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let message = response
        .headers()
        .get("x-error-message")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    if status == StatusCode::NOT_FOUND || code.as_deref() == Some("RepoNotFound") {
        return PullError::NotFound(what);
    }
    if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
        return PullError::Unauthorized {
            what,
            status: status.as_u16(),
        };
    }
    let message = match message {
        Some(message) => message,
        None => {
            let text = response.text().await.unwrap_or_default();
            text.chars().take(200).collect()
        }
    };
    PullError::Hub {
        what,
        status: status.as_u16(),
        message,
    }
}

/// `scheme://host[:port]` of a URL.
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map(|i| i + 3).unwrap_or(0);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// A repository's folder in the store (and in `.locks/`): `models--org--repo`.
fn folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

fn is_commit(revision: &str) -> bool {
    revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit())
}

fn walk_ggufs(base: &Path, dir: &Path, out: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk_ggufs(base, &path, out);
        } else if path.extension().is_some_and(|e| e == "gguf")
            && path.is_file()
            && let Ok(relative) = path.strip_prefix(base)
        {
            out.push(relative.to_string_lossy().replace('\\', "/"));
        }
    }
}

fn collect_links(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() && !path.is_symlink() {
            collect_links(&path, out);
        } else if let Ok(target) = std::fs::canonicalize(&path) {
            out.push(target);
        }
    }
}

fn remove_empty_dirs(dir: &Path) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.path().is_dir() && !entry.path().is_symlink() {
                remove_empty_dirs(&entry.path());
            }
        }
    }
    let _ = std::fs::remove_dir(dir);
}

/// The quantisation named in a GGUF file name (`…-Q4_K_M.gguf` → `Q4_K_M`), upper-cased.
pub fn quant_of(file: &str) -> Option<String> {
    let stem = file.rsplit('/').next()?.strip_suffix(".gguf")?;
    let upper = stem.to_ascii_uppercase();
    const KNOWN: [&str; 24] = [
        "IQ1_S", "IQ1_M", "IQ2_XXS", "IQ2_XS", "IQ2_S", "IQ2_M", "IQ3_XXS", "IQ3_XS", "IQ3_S",
        "IQ3_M", "IQ4_XS", "IQ4_NL", "Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_0", "Q4_K_S",
        "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K", "Q8_0", "BF16",
    ];
    KNOWN
        .iter()
        .chain(["F16", "F32", "Q4_1", "Q5_0", "Q5_1"].iter())
        .filter(|q| {
            upper.match_indices(*q).any(|(i, _)| {
                let before = upper[..i].chars().next_back();
                let after = upper[i + q.len()..].chars().next();
                !before.is_some_and(|c| c.is_ascii_alphanumeric())
                    && !after.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
            })
        })
        .max_by_key(|q| q.len())
        .map(|q| q.to_string())
}

/// Of a repository's GGUF files, the one of a quantisation (case does not matter); split
/// files (`-00001-of-00003`) are not served.
pub fn pick_quant(repo: &str, files: &[String], quant: &str) -> Result<String, PullError> {
    let wanted = quant.to_ascii_uppercase();
    let whole = |f: &&String| !f.contains("-of-");
    files
        .iter()
        .filter(whole)
        .filter(|f| quant_of(f).as_deref() == Some(wanted.as_str()))
        .min_by_key(|f| f.len())
        .cloned()
        .ok_or_else(|| {
            let mut available: Vec<String> = files
                .iter()
                .filter(whole)
                .filter_map(|f| quant_of(f))
                .collect();
            available.sort();
            available.dedup();
            PullError::NoQuant {
                repo: repo.into(),
                quant: quant.into(),
                available: if available.is_empty() {
                    "no single-file GGUF".into()
                } else {
                    available.join(", ")
                },
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantisations_are_read_from_file_names() {
        assert_eq!(
            quant_of("qwen2.5-coder-0.5b-instruct-q4_k_m.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(
            quant_of("Llama-3.2-1B-Instruct-Q8_0.gguf").as_deref(),
            Some("Q8_0")
        );
        assert_eq!(quant_of("model-IQ4_XS.gguf").as_deref(), Some("IQ4_XS"));
        assert_eq!(quant_of("model-f16.gguf").as_deref(), Some("F16"));
        assert_eq!(quant_of("model.gguf"), None);
        let files: Vec<String> = [
            "m-Q4_K_M.gguf",
            "m-Q8_0.gguf",
            "m-Q4_K_S.gguf",
            "big/m-Q6_K-00001-of-00002.gguf",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pick_quant("o/r", &files, "q4_k_m").unwrap(),
            "m-Q4_K_M.gguf"
        );
        let error = pick_quant("o/r", &files, "Q6_K").unwrap_err().to_string();
        assert!(
            error.contains("Q4_K_M, Q4_K_S, Q8_0"),
            "split files are not offered: {error}"
        );
    }

    #[test]
    fn names_that_would_leave_the_store_are_refused() {
        let named = |repo: &str, file: &str| HubFile {
            repo: repo.into(),
            revision: DEFAULT_REVISION.into(),
            file: file.into(),
        };
        assert!(named("org/repo", "sub/model-Q4_K_M.gguf").check().is_ok());
        for (repo, file) in [
            ("org/repo", "../../x.gguf"),
            ("org/repo", "a/../../x.gguf"),
            ("org/repo", "a\\..\\x.gguf"),
            ("org/repo", "/etc/x.gguf"),
            ("org/repo", "c:x.gguf"),
            ("org/..", "x.gguf"),
            ("org", "x.gguf"),
            ("org/repo/more", "x.gguf"),
        ] {
            let error = named(repo, file).check().expect_err(file);
            assert!(matches!(error, PullError::BadName(_)), "{repo} {file}");
        }
    }

    #[test]
    fn hub_redirects_keep_the_origin() {
        assert_eq!(origin("http://127.0.0.1:9/a/b"), "http://127.0.0.1:9");
        assert_eq!(origin("https://huggingface.co"), "https://huggingface.co");
    }
}
