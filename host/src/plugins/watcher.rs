//! Hot swap: watches the plugin directory and reloads a `.wasm` file once it stops changing.
//!
//! Editors and `cp` write a file in several steps, so events are debounced per file: a file is
//! read only after no event touched it for [`DEBOUNCE`]. Compiling happens on the watcher's own
//! thread, never on a request's. A change to `NAME.fixtures.jsonl` rechecks `NAME.wasm`.
//!
//! Only events that can change what a file holds wake the watcher (created, written, renamed,
//! removed); opening and reading do not, since reloading reads the very files it watches (a
//! fixtures file read during a reload used to trigger the next reload, forever). And a file
//! whose `.wasm` and fixtures hash as they did at the last load does not reload
//! ([`PluginHost::sync_file`]).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind};
use notify::{RecursiveMode, Watcher as _};

use super::registry::{PluginHost, SyncOutcome, is_wasm};

/// How long a file must be quiet before it is read.
pub const DEBOUNCE: Duration = Duration::from_millis(120);
/// How long after a load put off for lack of a sandbox it is tried again.
const RETRY_BUSY: Duration = Duration::from_secs(1);

/// Keeps the directory watched; dropping it stops the watch.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
    checks: Arc<AtomicU64>,
}

/// What the notify thread hands the reload thread.
enum Change {
    Path(PathBuf),
    /// Events were lost (the kernel's queue overflowed): look at every file again.
    Rescan,
}

/// The `.wasm` file a changed path concerns, if any.
fn plugin_file_for(path: &Path) -> Option<PathBuf> {
    if is_wasm(path) {
        return Some(path.to_path_buf());
    }
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".fixtures.jsonl")?;
    Some(path.with_file_name(format!("{stem}.wasm")))
}

/// Whether an event can mean that a file's contents changed. Access events (open, read, close
/// after reading) and metadata changes (`touch`, `chmod`) cannot.
pub(crate) fn changes_content(kind: &EventKind) -> bool {
    match kind {
        EventKind::Create(_) | EventKind::Remove(_) => true,
        EventKind::Modify(ModifyKind::Metadata(_)) => false,
        EventKind::Modify(_) => true,
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => true,
        EventKind::Access(_) | EventKind::Any | EventKind::Other => false,
    }
}

/// The plugin files a directory's `.wasm` and fixture files name (a rescan adds the files the
/// registry knows, which notices those removed).
fn plugin_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter_map(|p| plugin_file_for(&p))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    files.dedup();
    files
}

impl Watcher {
    /// Starts watching the host's plugin directory.
    pub fn start(host: PluginHost) -> anyhow::Result<Watcher> {
        let dir = host
            .dir()
            .ok_or_else(|| anyhow::anyhow!("no plugin directory to watch"))?
            .to_path_buf();
        let (tx, rx) = mpsc::channel::<Change>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                let Ok(event) = event else { return };
                if event.need_rescan() {
                    let _ = tx.send(Change::Rescan);
                } else if changes_content(&event.kind) {
                    for path in event.paths {
                        let _ = tx.send(Change::Path(path));
                    }
                }
            })?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?;
        let checks = Arc::new(AtomicU64::new(0));
        let counted = Arc::clone(&checks);
        std::thread::Builder::new()
            .name("plugboard-watch".into())
            .spawn(move || {
                // Per plugin file: when an event last touched it or its fixtures.
                let mut pending: HashMap<PathBuf, Instant> = HashMap::new();
                loop {
                    let wait = pending
                        .values()
                        .map(|at| (*at + DEBOUNCE).saturating_duration_since(Instant::now()))
                        .min()
                        .unwrap_or(Duration::from_secs(3600));
                    match rx.recv_timeout(wait) {
                        Ok(Change::Path(path)) => {
                            if let Some(wasm) = plugin_file_for(&path) {
                                pending.insert(wasm, Instant::now());
                            }
                        }
                        Ok(Change::Rescan) => {
                            tracing::warn!(dir = %dir.display(), "file events were lost; looking at every plugin file again");
                            for wasm in plugin_files(&dir).into_iter().chain(host.files()) {
                                pending.insert(wasm, Instant::now());
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    let due: Vec<PathBuf> = pending
                        .iter()
                        .filter(|(_, at)| at.elapsed() >= DEBOUNCE)
                        .map(|(p, _)| p.clone())
                        .collect();
                    for path in due {
                        pending.remove(&path);
                        counted.fetch_add(1, Ordering::Relaxed);
                        match host.sync_file(&path) {
                            SyncOutcome::Unchanged => {
                                tracing::debug!(file = %path.display(), "plugin file unchanged");
                            }
                            // Every sandbox stayed busy: look again shortly.
                            SyncOutcome::Deferred => {
                                pending.insert(path, Instant::now() + RETRY_BUSY);
                            }
                            _ => {}
                        }
                    }
                }
            })?;
        Ok(Watcher {
            _watcher: watcher,
            checks,
        })
    }

    /// How many times a plugin file was looked at after its events settled (whether or not it
    /// changed). Steady while nothing in the directory changes.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }
}
