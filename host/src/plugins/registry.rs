//! Which version of each adapter serves, and how a new one replaces it.
//!
//! The serving set is an immutable map behind an [`ArcSwap`]: a request takes an `Arc<Plugin>`
//! and keeps that version until it is done, while a swap publishes a new map atomically. A file
//! is compiled, instantiated, asked for its `info` and run against its own fixtures before it is
//! published; a file that fails any step changes nothing but its recorded error.
//!
//! The length is the swap's: compiling, checking, publishing and recording an outcome are
//! one transaction, kept in one place so that no step can be skipped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;
use utoipa::ToSchema;

use super::builtin::{self, Builtin};
use super::cache::sha256_hex;
use super::fixtures;
use super::runtime::{CallError, LoadError, Plugin, PluginSource, Runtime};

/// One version that started serving.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Swap {
    pub version: String,
    pub source: String,
    pub sha256: String,
    /// Seconds since the Unix epoch.
    #[serde(with = "unix_seconds")]
    #[schema(value_type = f64)]
    pub at: SystemTime,
}

/// A load that failed, kept until the same source loads well.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Failure {
    pub source: String,
    pub message: String,
    /// Seconds since the Unix epoch.
    #[serde(with = "unix_seconds")]
    #[schema(value_type = f64)]
    pub at: SystemTime,
}

/// Where an adapter (or a file that serves none) stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
pub enum AdapterState {
    /// Serving.
    #[serde(rename = "active")]
    Active,
    /// Serving, but a newer file of it failed to load: the older version stays.
    #[serde(rename = "active (update failed)")]
    UpdateFailed,
    /// A file that failed to load, or a built-in that failed to compile: nothing serves.
    #[serde(rename = "failed")]
    Failed,
    /// A built-in not asked for yet (listing never compiles it).
    #[serde(rename = "built-in (not loaded)")]
    NotLoaded,
}

impl AdapterState {
    pub fn as_str(self) -> &'static str {
        match self {
            AdapterState::Active => "active",
            AdapterState::UpdateFailed => "active (update failed)",
            AdapterState::Failed => "failed",
            AdapterState::NotLoaded => "built-in (not loaded)",
        }
    }
}

/// Why a plugin file (or a built-in) did not start serving; the serving version stays.
#[derive(Debug, thiserror::Error)]
pub enum SwapError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("{plugin} failed its fixtures: {summary}")]
    Fixtures { plugin: String, summary: String },
    #[error("built-in plugins/{folder} calls itself '{name}'; folder and adapter name must match")]
    Misnamed { folder: String, name: String },
    #[error("the adapter '{name}' is already served by {}; remove one of the two files", other.display())]
    Duplicate { name: String, other: PathBuf },
    /// No sandbox came free for the checks: the load is put off, not refused.
    #[error("{0}; the load is put off")]
    Busy(CallError),
}

impl SwapError {
    /// Whether the load was put off for lack of a free sandbox (it says nothing of the file).
    pub fn is_busy(&self) -> bool {
        matches!(
            self,
            SwapError::Busy(_) | SwapError::Load(LoadError::Busy { .. })
        )
    }
}

/// What `plugboard plugins list` and the admin API show for one adapter (or one file that
/// serves none).
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Entry {
    pub name: String,
    pub version: Option<String>,
    pub families: Vec<String>,
    pub source: String,
    pub state: AdapterState,
    pub contract: Option<String>,
    pub sha256: Option<String>,
    /// Whether the serving code is Cranelift's, optimised. A big component the server has
    /// not compiled before serves from quick code (Winch's) for its first seconds while the
    /// optimised code compiles.
    pub optimised: Option<bool>,
    /// The built-in version this one replaces, if any.
    pub overrides: Option<String>,
    pub last_error: Option<Failure>,
    pub history: Vec<Swap>,
    /// Calls this version failed by crashing, timing out, running out of memory or returning
    /// garbage.
    pub faults: u64,
}

#[derive(Default)]
struct FileState {
    /// The adapter this file serves now.
    serves: Option<String>,
    sha256: Option<String>,
    error: Option<Failure>,
    /// What the file and its fixtures held when they were last loaded or refused.
    seen: Option<Hashes>,
}

/// The sha256 of a plugin file and of its fixtures (`None`: it has none).
#[derive(Clone, PartialEq, Eq)]
struct Hashes {
    wasm: String,
    fixtures: Option<String>,
}

/// A plugin file and its fixtures, read once.
struct FileContents {
    wasm: Vec<u8>,
    fixtures: Option<String>,
    hashes: Hashes,
}

impl FileContents {
    /// `None` when the plugin file does not exist.
    fn read(path: &Path) -> Result<Option<FileContents>, SwapError> {
        let wasm = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(SwapError::Io {
                    path: path.to_path_buf(),
                    source,
                });
            }
        };
        let fixtures_path = PluginHost::fixtures_path(path);
        let fixtures = match std::fs::read_to_string(&fixtures_path) {
            Ok(text) => Some(text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => {
                return Err(SwapError::Io {
                    path: fixtures_path,
                    source,
                });
            }
        };
        let hashes = Hashes {
            wasm: sha256_hex(&wasm),
            fixtures: fixtures.as_deref().map(|t| sha256_hex(t.as_bytes())),
        };
        Ok(Some(FileContents {
            wasm,
            fixtures,
            hashes,
        }))
    }
}

/// What a change to a plugin file led to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncOutcome {
    /// A new version serves.
    Swapped,
    /// Only the fixtures changed and the serving version passes them.
    Rechecked,
    /// The file failed to load or its fixtures; the serving version stays.
    Rejected,
    /// The file is gone and its adapter with it.
    Removed,
    /// Every sandbox stayed in use while the file waited for one to be checked in: nothing
    /// changed, and the file must be looked at again.
    Deferred,
    /// Neither the file nor its fixtures changed: nothing was done.
    Unchanged,
}

impl SyncOutcome {
    fn as_str(self) -> &'static str {
        match self {
            SyncOutcome::Swapped => "swapped",
            SyncOutcome::Rechecked => "rechecked",
            SyncOutcome::Rejected => "rejected",
            SyncOutcome::Removed => "removed",
            SyncOutcome::Deferred => "deferred",
            SyncOutcome::Unchanged => "unchanged",
        }
    }
}

/// `plugboard_adapter_swaps_total{adapter,outcome}`: every load, refusal and removal of a
/// plugin file (events that changed nothing are not counted).
fn count_swap(adapter: &str, outcome: SyncOutcome) {
    metrics::counter!("plugboard_adapter_swaps_total", "adapter" => adapter.to_string(), "outcome" => outcome.as_str())
        .increment(1);
}

#[derive(Default)]
struct Status {
    files: BTreeMap<PathBuf, FileState>,
    history: BTreeMap<String, Vec<Swap>>,
    builtin_errors: BTreeMap<String, Failure>,
}

struct Inner {
    runtime: Arc<Runtime>,
    serving: ArcSwap<BTreeMap<String, Arc<Plugin>>>,
    builtins: bool,
    dir: Option<PathBuf>,
    status: Mutex<Status>,
}

/// The adapters this process can use: the built-ins, overridden by the `.wasm` files of the
/// plugin directory. Cheap to clone.
#[derive(Clone)]
pub struct PluginHost {
    inner: Arc<Inner>,
}

/// How many swaps of one adapter are remembered.
const HISTORY: usize = 20;

impl PluginHost {
    /// Loads the `.wasm` files of `dir` (built-ins load on first use). Files that fail are
    /// recorded, not fatal.
    pub fn new(runtime: Arc<Runtime>, builtins: bool, dir: Option<PathBuf>) -> PluginHost {
        let host = PluginHost {
            inner: Arc::new(Inner {
                runtime,
                serving: ArcSwap::from_pointee(BTreeMap::new()),
                builtins,
                dir: dir.clone(),
                status: Mutex::new(Status::default()),
            }),
        };
        if let Some(dir) = &dir {
            let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
                .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
                .unwrap_or_default();
            files.sort();
            for path in files.iter().filter(|p| is_wasm(p)) {
                let _ = host.reload_file(path);
            }
        }
        host
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.inner.runtime
    }

    /// The plugin directory, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.inner.dir.as_deref()
    }

    fn status(&self) -> MutexGuard<'_, Status> {
        // A panic while holding the lock leaves plain data behind; keep serving.
        self.inner.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The serving version of an adapter. A built-in is compiled the first time it is asked for.
    pub fn get(&self, name: &str) -> Option<Arc<Plugin>> {
        if let Some(plugin) = self.inner.serving.load().get(name) {
            return Some(Arc::clone(plugin));
        }
        let builtin = self.builtin(name)?;
        let mut status = self.status();
        // Another thread may have loaded it (or a file may now serve the name) meanwhile.
        if let Some(plugin) = self.inner.serving.load().get(name) {
            return Some(Arc::clone(plugin));
        }
        match self.load_builtin(builtin) {
            Ok(plugin) => {
                self.publish(&mut status, name, Arc::clone(&plugin));
                status.builtin_errors.remove(name);
                Some(plugin)
            }
            Err(error) => {
                tracing::error!(adapter = name, "built-in adapter failed to load: {error}");
                status.builtin_errors.insert(
                    name.to_string(),
                    Failure {
                        source: format!("built-in:{name}"),
                        message: error.to_string(),
                        at: SystemTime::now(),
                    },
                );
                None
            }
        }
    }

    fn builtin(&self, name: &str) -> Option<&'static Builtin> {
        if !self.inner.builtins {
            return None;
        }
        builtin::ALL.iter().find(|b| b.name == name)
    }

    fn load_builtin(&self, builtin: &Builtin) -> Result<Arc<Plugin>, SwapError> {
        let plugin = self.inner.runtime.load(
            builtin.wasm,
            PluginSource::Builtin(builtin.name.to_string()),
        )?;
        if plugin.info().name != builtin.name {
            return Err(SwapError::Misnamed {
                folder: builtin.name.to_string(),
                name: plugin.info().name.clone(),
            });
        }
        Ok(plugin)
    }

    /// Names of every adapter that can serve: built-ins and files.
    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.inner.serving.load().keys().cloned().collect();
        if self.inner.builtins {
            names.extend(builtin::ALL.iter().map(|b| b.name.to_string()));
        }
        names.sort();
        names.dedup();
        names
    }

    fn publish(&self, status: &mut Status, name: &str, plugin: Arc<Plugin>) {
        let history = status.history.entry(name.to_string()).or_default();
        history.push(Swap {
            version: plugin.info().version.clone(),
            source: plugin.source().to_string(),
            sha256: plugin.sha256().to_string(),
            at: SystemTime::now(),
        });
        if history.len() > HISTORY {
            history.remove(0);
        }
        crate::events::publish(crate::events::Event::AdapterSwapped {
            adapter: name.to_string(),
            version: plugin.info().version.clone(),
            source: plugin.source().to_string(),
        });
        let name = name.to_string();
        let before = self.inner.serving.rcu(|serving| {
            let mut next = BTreeMap::clone(serving);
            next.insert(name.clone(), Arc::clone(&plugin));
            next
        });
        if let Some(replaced) = before.get(&name).filter(|p| !Arc::ptr_eq(p, &plugin)) {
            replaced.retire();
        }
    }

    fn unpublish(&self, name: &str) {
        crate::events::publish(crate::events::Event::AdapterRemoved {
            adapter: name.to_string(),
        });
        let before = self.inner.serving.rcu(|serving| {
            let mut next = BTreeMap::clone(serving);
            next.remove(name);
            next
        });
        if let Some(removed) = before.get(name) {
            removed.retire();
        }
    }

    /// The fixture file that belongs to a plugin file: `NAME.fixtures.jsonl` beside `NAME.wasm`.
    pub fn fixtures_path(wasm: &Path) -> PathBuf {
        wasm.with_extension("fixtures.jsonl")
    }

    /// Compiles a plugin file and runs its fixtures, without publishing it.
    fn check_contents(
        runtime: &Arc<Runtime>,
        path: &Path,
        files: &FileContents,
    ) -> Result<(Arc<Plugin>, Option<fixtures::Report>), SwapError> {
        let plugin = runtime.load(&files.wasm, PluginSource::File(path.to_path_buf()))?;
        let report = files
            .fixtures
            .as_deref()
            .map(|text| fixtures::run(&plugin, text))
            .transpose()
            .map_err(SwapError::Busy)?;
        Ok((plugin, report))
    }

    /// Loads (or reloads) a plugin file and publishes it if every check passes. On failure the
    /// serving version stays and the error is recorded for `plugins list`.
    pub fn reload_file(&self, path: &Path) -> Result<Arc<Plugin>, SwapError> {
        let files = match FileContents::read(path) {
            Ok(Some(files)) => files,
            Ok(None) => {
                let error = SwapError::Io {
                    path: path.to_path_buf(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "no such file"),
                };
                self.record_failure(path, None, &error);
                return Err(error);
            }
            Err(error) => {
                self.record_failure(path, None, &error);
                return Err(error);
            }
        };
        self.load_contents(path, files).1
    }

    /// Brings what serves in line with a plugin file after a change event: loads it when its
    /// `.wasm` or its fixtures differ from what was last loaded or refused, unloads it when it is
    /// gone, and does nothing when neither changed (an event that changed no content, or a
    /// second event for a change already handled).
    pub fn sync_file(&self, path: &Path) -> SyncOutcome {
        let files = match FileContents::read(path) {
            Ok(Some(files)) => files,
            Ok(None) => {
                return if self.remove_file(path) {
                    SyncOutcome::Removed
                } else {
                    SyncOutcome::Unchanged
                };
            }
            Err(error) => {
                tracing::warn!(file = %path.display(), "{error}");
                return SyncOutcome::Unchanged;
            }
        };
        let unchanged = self
            .status()
            .files
            .get(path)
            .and_then(|f| f.seen.as_ref())
            .is_some_and(|seen| *seen == files.hashes);
        if unchanged {
            return SyncOutcome::Unchanged;
        }
        self.load_contents(path, files).0
    }

    fn load_contents(
        &self,
        path: &Path,
        files: FileContents,
    ) -> (SyncOutcome, Result<Arc<Plugin>, SwapError>) {
        let hashes = files.hashes.clone();
        match self.try_load(path, &files) {
            Ok((outcome, plugin)) => {
                let name = plugin.info().name.clone();
                count_swap(&name, outcome);
                (outcome, Ok(plugin))
            }
            Err(error) if error.is_busy() => {
                // Not the file's failure: nothing is recorded as seen, so it loads when looked
                // at again.
                tracing::warn!(file = %path.display(), "{error}");
                (SyncOutcome::Deferred, Err(error))
            }
            Err(error) => {
                tracing::error!(file = %path.display(), "plugin not loaded, the serving version stays: {error}");
                self.record_failure(path, Some(hashes), &error);
                let stem = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                let name = self
                    .status()
                    .files
                    .get(path)
                    .and_then(|f| f.serves.clone())
                    .unwrap_or(stem);
                count_swap(&name, SyncOutcome::Rejected);
                crate::events::publish(crate::events::Event::AdapterRejected {
                    adapter: name,
                    file: path.display().to_string(),
                    reason: error.to_string(),
                });
                (SyncOutcome::Rejected, Err(error))
            }
        }
    }

    fn record_failure(&self, path: &Path, seen: Option<Hashes>, error: &SwapError) {
        let mut status = self.status();
        let state = status.files.entry(path.to_path_buf()).or_default();
        state.seen = seen;
        state.error = Some(Failure {
            source: path.display().to_string(),
            message: error.to_string(),
            at: SystemTime::now(),
        });
    }

    fn try_load(
        &self,
        path: &Path,
        files: &FileContents,
    ) -> Result<(SyncOutcome, Arc<Plugin>), SwapError> {
        let (plugin, report) = Self::check_contents(&self.inner.runtime, path, files)?;
        if let Some(report) = report
            && !report.passed()
        {
            return Err(SwapError::Fixtures {
                plugin: plugin.label().to_string(),
                summary: report.summary(),
            });
        }
        let name = plugin.info().name.clone();
        let mut status = self.status();
        let provider = status
            .files
            .iter()
            .find(|(p, f)| p.as_path() != path && f.serves.as_deref() == Some(name.as_str()))
            .map(|(p, _)| p.clone());
        if let Some(other) = provider {
            return Err(SwapError::Duplicate { name, other });
        }
        let state = status.files.entry(path.to_path_buf()).or_default();
        state.seen = Some(files.hashes.clone());
        state.error = None;
        if state.serves.as_deref() == Some(name.as_str())
            && state.sha256.as_deref() == Some(plugin.sha256())
        {
            // Only the fixtures changed, and the serving version passes them: nothing swaps.
            tracing::info!(file = %path.display(), "adapter {} passes its changed fixtures", plugin.label());
            let serving = self.inner.serving.load().get(&name).cloned();
            return Ok((SyncOutcome::Rechecked, serving.unwrap_or(plugin)));
        }
        let previous = state.serves.replace(name.clone());
        state.sha256 = Some(plugin.sha256().to_string());
        if let Some(previous) = previous.filter(|p| *p != name) {
            // The file now holds another adapter: its old name falls back to the built-in.
            self.unpublish(&previous);
        }
        self.publish(&mut status, &name, Arc::clone(&plugin));
        tracing::info!(file = %path.display(), "adapter {} serving", plugin.label());
        Ok((SyncOutcome::Swapped, plugin))
    }

    /// A plugin file was deleted: its adapter stops serving (a built-in of that name returns).
    /// Returns whether an adapter was unloaded.
    pub fn remove_file(&self, path: &Path) -> bool {
        let mut status = self.status();
        let Some(state) = status.files.remove(path) else {
            return false;
        };
        let Some(name) = state.serves else {
            return false;
        };
        tracing::info!(file = %path.display(), "plugin file removed; adapter '{name}' unloaded");
        self.unpublish(&name);
        count_swap(&name, SyncOutcome::Removed);
        true
    }

    /// The plugin files loaded or refused so far.
    pub fn files(&self) -> Vec<PathBuf> {
        self.status().files.keys().cloned().collect()
    }

    /// Compiles every built-in adapter not loaded yet (so that [`PluginHost::list`] can show
    /// their versions).
    pub fn load_builtins(&self) {
        for name in self.names() {
            let _ = self.get(&name);
        }
    }

    /// Every adapter and every file that failed. Built-ins not used yet are listed as `built-in
    /// (not loaded)`: listing never compiles anything.
    pub fn list(&self) -> Vec<Entry> {
        let serving = self.inner.serving.load();
        let status = self.status();
        let mut entries: Vec<Entry> = Vec::new();
        for (name, plugin) in serving.iter() {
            let file = status
                .files
                .values()
                .find(|f| f.serves.as_deref() == Some(name.as_str()));
            let last_error = file.and_then(|f| f.error.clone());
            let overrides = match plugin.source() {
                PluginSource::File(_) if self.builtin(name).is_some() => {
                    Some(format!("built-in:{name}"))
                }
                _ => None,
            };
            entries.push(Entry {
                name: name.clone(),
                version: Some(plugin.info().version.clone()),
                families: plugin.info().families.clone(),
                source: plugin.source().to_string(),
                state: if last_error.is_some() {
                    AdapterState::UpdateFailed
                } else {
                    AdapterState::Active
                },
                contract: Some(plugin.contract().to_string()),
                sha256: Some(plugin.sha256().to_string()),
                optimised: Some(plugin.optimised()),
                overrides,
                last_error,
                history: status.history.get(name).cloned().unwrap_or_default(),
                faults: plugin.faults(),
            });
        }
        for (path, file) in &status.files {
            if file.serves.is_none() {
                entries.push(Entry {
                    name: path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .unwrap_or_default(),
                    version: None,
                    families: Vec::new(),
                    source: path.display().to_string(),
                    state: AdapterState::Failed,
                    contract: None,
                    sha256: None,
                    optimised: None,
                    overrides: None,
                    last_error: file.error.clone(),
                    history: Vec::new(),
                    faults: 0,
                });
            }
        }
        if self.inner.builtins {
            for b in builtin::ALL.iter().filter(|b| {
                !serving.contains_key(b.name) && !status.builtin_errors.contains_key(b.name)
            }) {
                entries.push(Entry {
                    name: b.name.to_string(),
                    version: None,
                    families: Vec::new(),
                    source: format!("built-in:{}", b.name),
                    state: AdapterState::NotLoaded,
                    contract: None,
                    sha256: None,
                    optimised: None,
                    overrides: None,
                    last_error: None,
                    history: Vec::new(),
                    faults: 0,
                });
            }
        }
        for (name, failure) in &status.builtin_errors {
            entries.push(Entry {
                name: name.clone(),
                version: None,
                families: Vec::new(),
                source: format!("built-in:{name}"),
                state: AdapterState::Failed,
                contract: None,
                sha256: None,
                optimised: None,
                overrides: None,
                last_error: Some(failure.clone()),
                history: Vec::new(),
                faults: 0,
            });
        }
        entries
    }
}

/// Whether a path names a plugin file.
pub fn is_wasm(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "wasm")
}

mod unix_seconds {
    use std::time::{SystemTime, UNIX_EPOCH};

    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        let secs = t
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or(0.0);
        s.serialize_f64((secs * 1000.0).round() / 1000.0)
    }
}
