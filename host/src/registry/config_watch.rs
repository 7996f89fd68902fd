//! The config file, read again when it changes: a model added, removed or edited there serves
//! (or stops serving) without a restart. The file's folder is watched, not the file, so that
//! an editor that saves by writing a new file and renaming it over the old one is seen too.
//! A file that does not parse, or declares something wrong, changes nothing: the models
//! serving go on serving, and the error is logged.

use std::sync::Arc;
use std::sync::mpsc;

use notify::{RecursiveMode, Watcher as _};

use super::Registry;
use crate::plugins::{DEBOUNCE, changes_content};

/// Keeps the config file watched; dropping it stops the watch.
pub struct ConfigWatcher {
    _watcher: notify::RecommendedWatcher,
}

impl ConfigWatcher {
    /// Watches the registry's config file (`None` when it has none).
    pub fn start(registry: Arc<Registry>) -> notify::Result<Option<ConfigWatcher>> {
        let Some(path) = registry.config_path() else {
            return Ok(None);
        };
        let name = path.file_name().map(|n| n.to_os_string());
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => ".".into(),
        };
        let (changed, changes) = mpsc::channel::<()>();
        let mut watcher =
            notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
                if let Ok(event) = event
                    && changes_content(&event.kind)
                    && event
                        .paths
                        .iter()
                        .any(|p| p.file_name().map(|n| n.to_os_string()) == name)
                {
                    let _ = changed.send(());
                }
            })?;
        watcher.watch(&dir, RecursiveMode::NonRecursive)?;
        std::thread::Builder::new()
            .name("plugboard-config-watch".into())
            .spawn(move || {
                while changes.recv().is_ok() {
                    // Read once the file has been quiet for a moment (editors write in steps).
                    while changes.recv_timeout(DEBOUNCE).is_ok() {}
                    match registry.refresh() {
                        Ok(()) => tracing::info!("config file read again"),
                        Err(error) => tracing::warn!(
                            "the changed config file is not used, the models serving go on: {error}"
                        ),
                    }
                }
            })
            .map_err(|e| notify::Error::generic(&e.to_string()))?;
        Ok(Some(ConfigWatcher { _watcher: watcher }))
    }
}
