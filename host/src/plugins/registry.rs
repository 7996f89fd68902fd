//! Which version of each adapter serves, and how a new one replaces it.
//!
//! The serving set is an immutable map behind an [`ArcSwap`]: a request takes an `Arc<Plugin>`
//! and keeps that version until it is done, while a swap publishes a new map atomically. A file
//! is compiled, instantiated, asked for its `info` and run against its own fixtures before it is
//! published; a file that fails any step changes nothing but its recorded error.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use arc_swap::ArcSwap;
use serde::Serialize;

use super::builtin::{self, Builtin};
use super::fixtures;
use super::runtime::{Plugin, PluginSource, Runtime};

/// One version that started serving.
#[derive(Clone, Debug, Serialize)]
pub struct Swap {
    pub version: String,
    pub source: String,
    pub sha256: String,
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
}

/// A load that failed, kept until the same source loads well.
#[derive(Clone, Debug, Serialize)]
pub struct Failure {
    pub source: String,
    pub message: String,
    #[serde(with = "unix_seconds")]
    pub at: SystemTime,
}

/// What `plugboard plugins list` and the admin API show for one adapter (or one file that
/// serves none).
#[derive(Clone, Debug, Serialize)]
pub struct Entry {
    pub name: String,
    pub version: Option<String>,
    pub families: Vec<String>,
    pub source: String,
    /// `active`, `active (update failed)`, or `failed`.
    pub state: String,
    pub contract: Option<String>,
    pub sha256: Option<String>,
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
            Err(message) => {
                tracing::error!(adapter = name, "built-in adapter failed to load: {message}");
                status.builtin_errors.insert(
                    name.to_string(),
                    Failure {
                        source: format!("built-in:{name}"),
                        message,
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

    fn load_builtin(&self, builtin: &Builtin) -> Result<Arc<Plugin>, String> {
        let plugin = self
            .inner
            .runtime
            .load(
                builtin.wasm,
                PluginSource::Builtin(builtin.name.to_string()),
            )
            .map_err(|e| e.to_string())?;
        if plugin.info().name != builtin.name {
            return Err(format!(
                "built-in plugins/{} calls itself '{}'; folder and adapter name must match",
                builtin.name,
                plugin.info().name
            ));
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
        let name = name.to_string();
        self.inner.serving.rcu(|serving| {
            let mut next = BTreeMap::clone(serving);
            next.insert(name.clone(), Arc::clone(&plugin));
            next
        });
    }

    fn unpublish(&self, name: &str) {
        self.inner.serving.rcu(|serving| {
            let mut next = BTreeMap::clone(serving);
            next.remove(name);
            next
        });
    }

    /// The fixture file that belongs to a plugin file: `NAME.fixtures.jsonl` beside `NAME.wasm`.
    pub fn fixtures_path(wasm: &Path) -> PathBuf {
        wasm.with_extension("fixtures.jsonl")
    }

    /// Compiles, checks and runs the fixtures of a plugin file, without publishing it.
    pub fn check_file(
        runtime: &Arc<Runtime>,
        path: &Path,
    ) -> Result<(Arc<Plugin>, Option<fixtures::Report>), String> {
        let wasm =
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        let plugin = runtime
            .load(&wasm, PluginSource::File(path.to_path_buf()))
            .map_err(|e| e.to_string())?;
        let fixtures_path = Self::fixtures_path(path);
        let report = match std::fs::read_to_string(&fixtures_path) {
            Ok(text) => Some(fixtures::run(&plugin, &text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(format!("cannot read {}: {e}", fixtures_path.display())),
        };
        Ok((plugin, report))
    }

    /// Loads (or reloads) a plugin file and publishes it if every check passes. On failure the
    /// serving version stays and the error is recorded for `plugins list`.
    pub fn reload_file(&self, path: &Path) -> Result<Arc<Plugin>, String> {
        let result = self.try_reload(path);
        if let Err(message) = &result {
            tracing::error!(file = %path.display(), "plugin not loaded, the serving version stays: {message}");
            self.status()
                .files
                .entry(path.to_path_buf())
                .or_default()
                .error = Some(Failure {
                source: path.display().to_string(),
                message: message.clone(),
                at: SystemTime::now(),
            });
        }
        result
    }

    fn try_reload(&self, path: &Path) -> Result<Arc<Plugin>, String> {
        let (plugin, report) = Self::check_file(&self.inner.runtime, path)?;
        if let Some(report) = report
            && !report.passed()
        {
            return Err(format!(
                "{} failed its fixtures: {}",
                plugin.label(),
                report.summary()
            ));
        }
        let name = plugin.info().name.clone();
        let mut status = self.status();
        let provider = status
            .files
            .iter()
            .find(|(p, f)| p.as_path() != path && f.serves.as_deref() == Some(name.as_str()))
            .map(|(p, _)| p.clone());
        if let Some(other) = provider {
            return Err(format!(
                "the adapter '{name}' is already served by {}; remove one of the two files",
                other.display()
            ));
        }
        let state = status.files.entry(path.to_path_buf()).or_default();
        let previous = state.serves.replace(name.clone());
        state.sha256 = Some(plugin.sha256().to_string());
        state.error = None;
        if let Some(previous) = previous.filter(|p| *p != name) {
            // The file now holds another adapter: its old name falls back to the built-in.
            self.unpublish(&previous);
        }
        self.publish(&mut status, &name, Arc::clone(&plugin));
        tracing::info!(file = %path.display(), "adapter {} serving", plugin.label());
        Ok(plugin)
    }

    /// Whether the file's contents are what already serves (nothing to do on a change event).
    pub fn is_current(&self, path: &Path, sha256: &str) -> bool {
        let status = self.status();
        status
            .files
            .get(path)
            .is_some_and(|f| f.error.is_none() && f.sha256.as_deref() == Some(sha256))
    }

    /// A plugin file was deleted: its adapter stops serving (a built-in of that name returns).
    pub fn remove_file(&self, path: &Path) {
        let mut status = self.status();
        if let Some(state) = status.files.remove(path)
            && let Some(name) = state.serves
        {
            tracing::info!(file = %path.display(), "plugin file removed; adapter '{name}' unloaded");
            self.unpublish(&name);
        }
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
                    "active (update failed)"
                } else {
                    "active"
                }
                .into(),
                contract: Some(plugin.contract().to_string()),
                sha256: Some(plugin.sha256().to_string()),
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
                    state: "failed".into(),
                    contract: None,
                    sha256: None,
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
                    state: "built-in (not loaded)".into(),
                    contract: None,
                    sha256: None,
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
                state: "failed".into(),
                contract: None,
                sha256: None,
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
