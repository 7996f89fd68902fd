//! Hot swap: watches the plugin directory and reloads a `.wasm` file once it stops changing.
//!
//! Editors and `cp` write a file in several steps, so events are debounced per file: a file is
//! read only after no event touched it for [`DEBOUNCE`]. Compiling happens on the watcher's own
//! thread, never on a request's. A change to `NAME.fixtures.jsonl` rechecks `NAME.wasm`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use notify::{RecursiveMode, Watcher as _};

use super::cache::sha256_hex;
use super::registry::{PluginHost, is_wasm};

/// How long a file must be quiet before it is read.
pub const DEBOUNCE: Duration = Duration::from_millis(120);

/// Keeps the directory watched; dropping it stops the watch.
pub struct Watcher {
    _watcher: notify::RecommendedWatcher,
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

fn process(host: &PluginHost, path: &Path, fixtures_changed: bool) {
    match std::fs::read(path) {
        Ok(bytes) => {
            if !fixtures_changed && host.is_current(path, &sha256_hex(&bytes)) {
                return;
            }
            let _ = host.reload_file(path);
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => host.remove_file(path),
        Err(e) => tracing::warn!(file = %path.display(), "cannot read plugin file: {e}"),
    }
}

impl Watcher {
    /// Starts watching the host's plugin directory.
    pub fn start(host: PluginHost) -> anyhow::Result<Watcher> {
        let dir = host
            .dir()
            .ok_or_else(|| anyhow::anyhow!("no plugin directory to watch"))?
            .to_path_buf();
        let (tx, rx) = mpsc::channel::<PathBuf>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event {
                    for path in event.paths {
                        let _ = tx.send(path);
                    }
                }
            })?;
        watcher
            .watch(&dir, RecursiveMode::NonRecursive)
            .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", dir.display()))?;
        std::thread::Builder::new()
            .name("plugboard-watch".into())
            .spawn(move || {
                // Per plugin file: when it last changed, and whether only its fixtures did.
                let mut pending: HashMap<PathBuf, (Instant, bool)> = HashMap::new();
                loop {
                    let wait = pending
                        .values()
                        .map(|(at, _)| (*at + DEBOUNCE).saturating_duration_since(Instant::now()))
                        .min()
                        .unwrap_or(Duration::from_secs(3600));
                    match rx.recv_timeout(wait) {
                        Ok(path) => {
                            if let Some(wasm) = plugin_file_for(&path) {
                                let fixtures = !is_wasm(&path);
                                let entry =
                                    pending.entry(wasm).or_insert((Instant::now(), fixtures));
                                entry.0 = Instant::now();
                                entry.1 |= fixtures;
                            }
                        }
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                    let due: Vec<(PathBuf, bool)> = pending
                        .iter()
                        .filter(|(_, (at, _))| at.elapsed() >= DEBOUNCE)
                        .map(|(p, (_, f))| (p.clone(), *f))
                        .collect();
                    for (path, fixtures) in due {
                        pending.remove(&path);
                        process(&host, &path, fixtures);
                    }
                }
            })?;
        Ok(Watcher { _watcher: watcher })
    }
}
